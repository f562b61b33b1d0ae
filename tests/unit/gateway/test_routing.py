"""Adapter-affinity routing: the target setting, rendezvous order, spread, minimal movement, discovery.

The router here holds fake channels and makes no call. Everything a request goes
through (fallback, in-flight counts, spill, draining, the metrics) is shown on the
gateway's HTTP API over real replicas in tests/integration/test_inference_routing.py.
"""

from __future__ import annotations

import asyncio
import collections

import pytest

from services.common.errors import Unavailable
from services.gateway.config import GatewaySettings
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


def make_router(addresses: list[str]) -> AdapterAffinityRouter:
    return AdapterAffinityRouter(
        GatewaySettings(inference_addr=",".join(addresses)),
        channel_factory=FakeChannel,  # type: ignore[arg-type]
    )


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


# -- choosing an endpoint (the request path itself: tests/integration/test_inference_routing.py) --


async def test_an_adapter_goes_to_its_home_replica() -> None:
    addresses = endpoints(4)
    router = make_router(addresses)
    for adapter in ADAPTERS[:200]:
        assert router.choose(adapter).address == rank_endpoints(addresses, adapter)[0]  # type: ignore[union-attr]


async def test_with_no_healthy_replica_the_home_is_tried_anyway() -> None:
    addresses = endpoints(3)
    router = make_router(addresses)
    for endpoint in router.endpoints:
        endpoint.healthy = False  # stale: what the last health check said
    assert router.choose(ADAPTERS[2]).address == rank_endpoints(addresses, ADAPTERS[2])[0]  # type: ignore[union-attr]


async def test_no_endpoint_is_unavailable() -> None:
    router = AdapterAffinityRouter(
        GatewaySettings(inference_addr="dns:///inference-headless:50053"),
        channel_factory=FakeChannel,  # type: ignore[arg-type]
    )
    started: list[object] = []
    with pytest.raises(Unavailable):
        await router.open_stream("ft:x", started.append)  # type: ignore[arg-type]
    assert started == []
    assert await router.readiness() == "UNAVAILABLE"


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
        GatewaySettings(inference_addr="dns:///inference-headless:50053"),
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
    await _settle()
    # nothing was running there: closed at once
    assert channels[endpoints(1)[0]].closed  # type: ignore[attr-defined]
    assert all(not channels[a].closed for a in endpoints(3)[1:])  # type: ignore[attr-defined]

    for blip in ("empty", "error"):
        dns.answer, dns.fail = ([], False) if blip == "empty" else (endpoints(1), True)
        await router.refresh()
        assert sorted(e.address for e in router.endpoints) == sorted(endpoints(4)[1:])
    await router.close()


async def test_a_replica_back_before_its_drain_ends_keeps_its_channel() -> None:
    router = make_router(endpoints(2))
    flapping = router.endpoints[0]
    router.set_addresses(endpoints(2)[1:])  # its readiness failed for a moment
    router.set_addresses(endpoints(2))  # and is back before the next refresh
    await _settle()
    assert flapping in router.endpoints
    assert not flapping.channel.closed  # type: ignore[attr-defined]
    await router.close()
    assert flapping.channel.closed  # type: ignore[attr-defined]


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
