"""Adapter-affinity routing: rendezvous order, spread, minimal movement, choice and fallback.

The router here holds fake channels; the real gRPC path (several inference servers
on loopback, one stopped mid-load) is tests/integration/test_inference_routing.py.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator

import grpc
import pytest

from services.common.errors import Unavailable
from services.common.settings import CommonSettings
from services.gateway.routing import (
    AdapterAffinityRouter,
    Endpoint,
    InferenceTarget,
    parse_target,
    rank_endpoints,
    rendezvous_score,
)

ADAPTERS = [f"ft:tailor-tiny:org-{i % 17}:suffix:ftjob-{i:05d}" for i in range(10_000)]


class FakeChannel:
    """Stands in for a grpc.aio.Channel: the router only passes it on and closes it."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.closed = False

    async def close(self) -> None:
        self.closed = True


def endpoints(n: int) -> list[str]:
    return [f"10.0.0.{i}:50053" for i in range(1, n + 1)]


def make_router(addresses: list[str], **kwargs: object) -> AdapterAffinityRouter:
    return AdapterAffinityRouter(
        ",".join(addresses),
        CommonSettings(),
        channel_factory=FakeChannel,
        **kwargs,  # type: ignore[arg-type]
    )


def unavailable(
    details: str = "connection refused", code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE
) -> grpc.aio.AioRpcError:
    """What a replica that is gone (UNAVAILABLE) or stopping (CANCELLED) answers."""
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


def homes(addresses: list[str]) -> dict[str, str]:
    return {adapter: rank_endpoints(addresses, adapter)[0] for adapter in ADAPTERS}


# -- the target setting ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("dns:///inference-headless:50053", InferenceTarget(dns_host="inference-headless", dns_port=50053)),
        ("dns:inference-headless:50053", InferenceTarget(dns_host="inference-headless", dns_port=50053)),
        (
            "dns://10.96.0.10/inference-headless.tailor:50053",
            InferenceTarget("inference-headless.tailor", 50053),
        ),
        ("127.0.0.1:50053", InferenceTarget(static=("127.0.0.1:50053",))),
        (" a:1, b:2 ,a:1,", InferenceTarget(static=("a:1", "b:2"))),
        ("[::1]:50053", InferenceTarget(static=("[::1]:50053",))),
    ],
)
def test_targets_parse(spec: str, expected: InferenceTarget) -> None:
    assert parse_target(spec) == expected


@pytest.mark.parametrize("spec", ["", "inference", "dns:///inference-headless", "a:1,b", "host:99999", "h:x"])
def test_malformed_targets_are_refused(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_target(spec)


# -- rendezvous hashing --------------------------------------------------------------------------


def test_ranking_is_stable_across_calls_orders_and_processes() -> None:
    addresses = endpoints(5)
    first = rank_endpoints(addresses, "ft:tailor-tiny:org-a:s:ftjob-1")
    assert rank_endpoints(list(reversed(addresses)), "ft:tailor-tiny:org-a:s:ftjob-1") == first
    assert sorted(first) == sorted(addresses)
    # blake2b, not hash(): the value is fixed, so every gateway replica (and every restart) agrees
    assert rendezvous_score("10.0.0.1:50053", "ft:x") == 0xCE1780070F24E158


def test_many_adapters_spread_evenly() -> None:
    for n in (2, 3, 5, 8):
        counts = collections.Counter(homes(endpoints(n)).values())
        expected = len(ADAPTERS) / n
        assert len(counts) == n
        # binomial spread: the standard deviation is under 1% of the mean here; 10% is a wide margin
        assert all(abs(c - expected) < 0.10 * expected for c in counts.values()), counts


def test_removing_an_endpoint_moves_only_its_adapters() -> None:
    n = 6
    before = homes(endpoints(n))
    removed = endpoints(n)[2]
    after = homes([a for a in endpoints(n) if a != removed])
    moved = [adapter for adapter in ADAPTERS if before[adapter] != after[adapter]]
    assert all(before[adapter] == removed for adapter in moved)
    assert sum(1 for a in ADAPTERS if before[a] == removed) == len(moved)
    assert abs(len(moved) / len(ADAPTERS) - 1 / n) < 0.03
    # each moved adapter lands on its own second choice, so they spread over the survivors
    assert len(set(after[a] for a in moved)) == n - 1


def test_adding_an_endpoint_takes_its_share_from_everyone_and_nothing_else_moves() -> None:
    n = 4
    before = homes(endpoints(n))
    after = homes(endpoints(n + 1))
    new = endpoints(n + 1)[-1]
    moved = [adapter for adapter in ADAPTERS if before[adapter] != after[adapter]]
    assert all(after[adapter] == new for adapter in moved)
    assert abs(len(moved) / len(ADAPTERS) - 1 / (n + 1)) < 0.03
    assert len(set(before[a] for a in moved)) == n


# -- choosing an endpoint ------------------------------------------------------------------------


async def test_an_adapter_goes_to_its_home_replica() -> None:
    addresses = endpoints(4)
    router = make_router(addresses)
    for adapter in ADAPTERS[:200]:
        assert router.choose(adapter).address == rank_endpoints(addresses, adapter)[0]  # type: ignore[union-attr]
        assert router.channel_for(adapter).address == rank_endpoints(addresses, adapter)[0]  # type: ignore[attr-defined]


async def test_every_replica_can_be_reached_for_broadcasts() -> None:
    router = make_router(endpoints(3))
    assert sorted(c.address for c in router.all_channels()) == endpoints(3)  # type: ignore[attr-defined]


async def test_an_unhealthy_home_sends_the_adapter_to_its_second_choice() -> None:
    addresses = endpoints(4)
    router = make_router(addresses)
    adapter = ADAPTERS[0]
    first, second = rank_endpoints(addresses, adapter)[:2]
    router._endpoints[first].healthy = False
    assert router.choose(adapter).address == second  # type: ignore[union-attr]


async def test_an_overloaded_home_spills_to_the_second_choice_then_to_the_least_busy() -> None:
    addresses = endpoints(3)
    router = make_router(addresses, max_in_flight=2)
    adapter = ADAPTERS[1]
    order = rank_endpoints(addresses, adapter)
    router._endpoints[order[0]].in_flight = 2
    assert router.choose(adapter).address == order[1]  # type: ignore[union-attr]
    router._endpoints[order[1]].in_flight = 5
    assert router.choose(adapter).address == order[2]  # type: ignore[union-attr]
    # everyone at the limit: queue on the least busy rather than fail
    router._endpoints[order[2]].in_flight = 3
    assert router.choose(adapter).address == order[0]  # type: ignore[union-attr]


async def test_with_no_healthy_replica_the_home_is_tried_anyway() -> None:
    addresses = endpoints(3)
    router = make_router(addresses)
    for endpoint in router.endpoints:
        endpoint.healthy = False
    assert router.choose(ADAPTERS[2]).address == rank_endpoints(addresses, ADAPTERS[2])[0]  # type: ignore[union-attr]


async def test_base_model_requests_go_to_the_least_busy_and_idle_replicas_take_turns() -> None:
    addresses = endpoints(3)
    router = make_router(addresses)
    assert {router.choose(None).address for _ in range(3)} == set(addresses)  # type: ignore[union-attr]
    router._endpoints[addresses[0]].in_flight = 4
    router._endpoints[addresses[1]].in_flight = 1
    router._endpoints[addresses[2]].in_flight = 2
    assert all(router.choose(None).address == addresses[1] for _ in range(5))  # type: ignore[union-attr]


async def test_no_endpoint_is_unavailable() -> None:
    router = AdapterAffinityRouter(
        "dns:///inference-headless:50053",
        CommonSettings(),
        channel_factory=FakeChannel,  # type: ignore[arg-type]
    )
    with pytest.raises(Unavailable):
        router.channel_for("ft:x")
    with pytest.raises(Unavailable):
        await router.run("ft:x", lambda channel: _answer(channel))


# -- calling with fallback -----------------------------------------------------------------------


async def _answer(channel: FakeChannel) -> str:  # type: ignore[misc]
    return channel.address


@pytest.mark.parametrize("code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED])
async def test_run_moves_on_when_a_replica_refuses_and_marks_it_down(code: grpc.StatusCode) -> None:
    addresses = endpoints(3)
    router = make_router(addresses)
    adapter = ADAPTERS[3]
    order = rank_endpoints(addresses, adapter)
    calls: list[str] = []

    async def call(channel: FakeChannel) -> str:
        calls.append(channel.address)
        if channel.address == order[0]:
            raise unavailable(code=code)
        return channel.address

    assert await router.run(adapter, call) == order[1]  # type: ignore[arg-type]
    assert calls == order[:2]
    assert not router._endpoints[order[0]].healthy
    assert all(e.in_flight == 0 for e in router.endpoints)
    # the next call goes straight to the second choice until a health check says otherwise
    calls.clear()
    assert await router.run(adapter, call) == order[1]  # type: ignore[arg-type]
    assert calls == [order[1]]


async def test_run_does_not_retry_other_errors_and_gives_up_after_every_replica() -> None:
    router = make_router(endpoints(3))
    attempts = 0

    async def invalid(channel: FakeChannel) -> str:
        nonlocal attempts
        attempts += 1
        raise grpc.aio.AioRpcError(
            grpc.StatusCode.INVALID_ARGUMENT, grpc.aio.Metadata(), grpc.aio.Metadata(), "bad"
        )

    with pytest.raises(grpc.aio.AioRpcError):
        await router.run("ft:x", invalid)  # type: ignore[arg-type]
    assert attempts == 1

    async def down(channel: FakeChannel) -> str:
        raise unavailable()

    with pytest.raises(Unavailable):
        await router.run("ft:x", down)  # type: ignore[arg-type]


async def test_stream_retries_only_before_the_first_message() -> None:
    addresses = endpoints(3)
    router = make_router(addresses)
    adapter = ADAPTERS[4]
    order = rank_endpoints(addresses, adapter)

    def refuse_on_home(channel: FakeChannel) -> AsyncIterator[str]:
        async def responses() -> AsyncIterator[str]:
            if channel.address == order[0]:
                raise unavailable()
            for i in range(3):
                yield f"{channel.address}#{i}"

        return responses()

    got = [m async for m in router.stream(adapter, refuse_on_home)]  # type: ignore[arg-type]
    assert got == [f"{order[1]}#{i}" for i in range(3)]

    def break_midway(channel: FakeChannel) -> AsyncIterator[str]:
        async def responses() -> AsyncIterator[str]:
            yield "first"
            raise unavailable("replica died")

        return responses()

    received: list[str] = []
    with pytest.raises(grpc.aio.AioRpcError):
        async for message in router.stream(ADAPTERS[5], break_midway):  # type: ignore[arg-type]
            received.append(message)
    assert received == ["first"]
    assert all(e.in_flight == 0 for e in router.endpoints)


async def test_in_flight_counts_calls_while_they_run() -> None:
    router = make_router(endpoints(2))
    seen: list[int] = []

    def stream(channel: FakeChannel) -> AsyncIterator[int]:
        async def responses() -> AsyncIterator[int]:
            yield sum(e.in_flight for e in router.endpoints)

        return responses()

    async for value in router.stream("ft:x", stream):  # type: ignore[arg-type]
        seen.append(value)
    assert seen == [1]
    assert all(e.in_flight == 0 for e in router.endpoints)


# -- discovery -----------------------------------------------------------------------------------


class FakeDns:
    """A resolver whose answer the test sets; OSError when told to fail."""

    def __init__(self, answer: list[str]) -> None:
        self.answer = answer
        self.fail = False

    async def __call__(self, host: str, port: int) -> list[str]:
        assert (host, port) == ("inference-headless", 50053)
        if self.fail:
            raise OSError("temporary failure in name resolution")
        return list(self.answer)


async def always_serving(endpoint: Endpoint) -> bool:
    return True


async def test_refresh_follows_dns_and_keeps_the_last_set_through_blips(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dns = FakeDns(endpoints(3))
    router = AdapterAffinityRouter(
        "dns:///inference-headless:50053",
        CommonSettings(),
        resolver=dns,
        channel_factory=FakeChannel,  # type: ignore[arg-type]
    )
    monkeypatch.setattr(router, "_is_serving", always_serving)
    await router.refresh()
    assert sorted(e.address for e in router.endpoints) == endpoints(3)
    channels = {e.address: e.channel for e in router.endpoints}

    dns.answer = endpoints(4)[1:]  # a pod went away, another came
    await router.refresh()
    assert sorted(e.address for e in router.endpoints) == sorted(endpoints(4)[1:])
    assert channels[endpoints(1)[0]].closed  # type: ignore[attr-defined]
    assert all(not channels[a].closed for a in endpoints(3)[1:])  # type: ignore[attr-defined]

    for blip in ("empty", "error"):
        dns.answer, dns.fail = ([], False) if blip == "empty" else (endpoints(1), True)
        await router.refresh()
        assert sorted(e.address for e in router.endpoints) == sorted(endpoints(4)[1:])
    await router.close()


async def test_a_vanished_endpoint_closes_after_its_last_call() -> None:
    router = make_router(endpoints(2))
    leaving = router._endpoints[endpoints(2)[0]]
    leaving.in_flight = 1
    router.set_addresses(endpoints(2)[1:])
    assert not leaving.channel.closed  # type: ignore[attr-defined]
    router._release(leaving)
    await _settle()
    assert leaving.channel.closed  # type: ignore[attr-defined]


async def test_health_checks_mark_replicas_up_and_down(monkeypatch: pytest.MonkeyPatch) -> None:
    router = make_router(endpoints(3))
    down = endpoints(3)[1]

    async def serving(endpoint: Endpoint) -> bool:
        return endpoint.address != down

    monkeypatch.setattr(router, "_is_serving", serving)
    await router.check_health()
    assert {e.address for e in router.endpoints if not e.healthy} == {down}
    down = ""
    await router.check_health()
    assert all(e.healthy for e in router.endpoints)


async def _settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)
