"""Routing: the target setting, pools per base model, rendezvous order, spread, minimal movement, discovery.

The router here holds fake channels and makes no call. Everything a request goes
through (fallback, in-flight counts, spill, draining, the metrics) is shown on the
gateway's HTTP API over real replicas in tests/integration/test_inference_routing.py.
"""

from __future__ import annotations

import asyncio
import collections
import math
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest

from services.common.errors import Unavailable
from services.gateway.config import GatewaySettings
from services.gateway.inference_pools import Endpoint, InferenceTarget, parse_target
from services.gateway.routing import AdapterAffinityRouter, NoReplica, rank_endpoints, rendezvous_score

BASE = "tailor-tiny"
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


def make_router(addresses: list[str], base_model: str | None = BASE) -> AdapterAffinityRouter:
    """A router over fixed ``addresses``, every one already known to serve ``base_model``."""
    router = AdapterAffinityRouter(
        GatewaySettings(inference_addr=",".join(addresses)),
        channel_factory=FakeChannel,  # type: ignore[arg-type]
    )
    for endpoint in router.endpoints:
        endpoint.base_model = base_model
    return router


def homes(addresses: list[str]) -> dict[str, str]:
    return {adapter: rank_endpoints(addresses, adapter)[0] for adapter in ADAPTERS}


# -- the target setting ------------------------------------------------------------------------


HEADLESS = ("inference-headless", 50053)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("dns:///inference-headless:50053", InferenceTarget(dns=(HEADLESS,))),
        ("dns:inference-headless:50053", InferenceTarget(dns=(HEADLESS,))),
        (
            "dns://10.96.0.10/inference-headless.tailor:50053",
            InferenceTarget(dns=(("inference-headless.tailor", 50053),)),
        ),
        ("127.0.0.1:50053", InferenceTarget(static=("127.0.0.1:50053",))),
        (" a:1, b:2 ,a:1,", InferenceTarget(static=("a:1", "b:2"))),
        ("[::1]:50053", InferenceTarget(static=("[::1]:50053",))),
        # one inference Deployment (and headless Service) per base model
        (
            "dns:///inference-headless:50053, dns:///inference-second-headless:50053,dns:inference-headless:50053",
            InferenceTarget(dns=(HEADLESS, ("inference-second-headless", 50053))),
        ),
        (
            "dns:///inference-headless:50053,10.0.0.9:50053",
            InferenceTarget(dns=(HEADLESS,), static=("10.0.0.9:50053",)),
        ),
    ],
)
def test_targets_parse(spec: str, expected: InferenceTarget) -> None:
    assert parse_target(spec) == expected


@pytest.mark.parametrize(
    "spec",
    [
        "",
        " , ",
        "inference",
        "dns:///inference-headless",
        "a:1,b",
        "host:99999",
        "h:x",
        "dns:///a:1,dns:///b",
    ],
)
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
        assert router.choose(BASE, adapter).address == rank_endpoints(addresses, adapter)[0]  # type: ignore[union-attr]


async def test_with_no_healthy_replica_the_home_is_tried_anyway() -> None:
    addresses = endpoints(3)
    router = make_router(addresses)
    for endpoint in router.endpoints:
        endpoint.healthy = False  # stale: what the last health check said
    assert router.choose(BASE, ADAPTERS[2]).address == rank_endpoints(addresses, ADAPTERS[2])[0]  # type: ignore[union-attr]


async def test_no_endpoint_is_unavailable() -> None:
    router = AdapterAffinityRouter(
        GatewaySettings(inference_addr="dns:///inference-headless:50053"),
        channel_factory=FakeChannel,  # type: ignore[arg-type]
    )
    started: list[object] = []
    with pytest.raises(Unavailable):
        await router.open_stream(BASE, "ft:x", started.append)  # type: ignore[arg-type]
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


def says_base(
    bases: dict[str, str | None], default: str | None = BASE
) -> Callable[[Endpoint], Awaitable[str | None]]:
    """Stands for GetReplicaInfo: each endpoint's answer (None: no answer), ``default`` for the others."""

    async def ask(endpoint: Endpoint) -> str | None:
        return bases.get(endpoint.address, default)

    return ask


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
    monkeypatch.setattr(router, "_ask_base_model", says_base({}))
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
    monkeypatch.setattr(router, "_ask_base_model", says_base({}))
    await router.check_health()
    assert {e.address for e in router.endpoints if not e.healthy} == {down}
    down = ""
    await router.check_health()
    assert all(e.healthy for e in router.endpoints)


async def _settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


# -- pools: one per base model ------------------------------------------------------------------

OTHER = "tailor-tiny-b"


async def two_pools(
    monkeypatch: pytest.MonkeyPatch, **settings: Any
) -> tuple[AdapterAffinityRouter, list[str], list[str]]:
    """Six fixed endpoints: the first three serve BASE, the others OTHER (as their GetReplicaInfo says)."""
    addresses = endpoints(6)
    router = AdapterAffinityRouter(
        GatewaySettings(inference_addr=",".join(addresses), **settings),
        channel_factory=FakeChannel,  # type: ignore[arg-type]
    )
    monkeypatch.setattr(router, "_is_serving", always_serving)
    monkeypatch.setattr(router, "_ask_base_model", says_base({a: OTHER for a in addresses[3:]}))
    await router.refresh()
    return router, addresses[:3], addresses[3:]


async def test_each_request_goes_to_the_pool_of_its_base(monkeypatch: pytest.MonkeyPatch) -> None:
    router, pool_a, pool_b = await two_pools(monkeypatch)
    assert router.pools() == {BASE: pool_a, OTHER: pool_b}
    for adapter in ADAPTERS[:300]:
        # affinity within the pool: the same rendezvous order every gateway computes over it
        assert router.choose(BASE, adapter).address == rank_endpoints(pool_a, adapter)[0]  # type: ignore[union-attr]
        other = adapter.replace("ft:tailor-tiny:", f"ft:{OTHER}:")
        assert router.choose(OTHER, other).address == rank_endpoints(pool_b, other)[0]  # type: ignore[union-attr]
    # base-model requests: the least busy of the pool, taking turns when equally idle
    assert {router.choose(BASE, None).address for _ in range(12)} == set(pool_a)  # type: ignore[union-attr]
    assert {router.choose(OTHER, None).address for _ in range(12)} == set(pool_b)  # type: ignore[union-attr]
    await router.close()


async def test_spill_and_fallback_stay_within_the_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    router, pool_a, pool_b = await two_pools(monkeypatch, gateway_inference_max_in_flight=2)
    by_address = {e.address: e for e in router.endpoints}
    adapter = ADAPTERS[7]
    home, second, third = (by_address[a] for a in rank_endpoints(pool_a, adapter))
    home.in_flight = 2  # at its limit: spill to the second choice of the pool
    assert router.choose(BASE, adapter) is second
    second.healthy = False
    assert router.choose(BASE, adapter) is third
    third.in_flight = 5
    # every healthy one of the pool is full: the least busy of them, never an idle replica of another base
    assert router.choose(BASE, adapter) is home
    for address in pool_a:
        by_address[address].healthy = False
    assert router.choose(BASE, adapter) is home  # stale health: the home is tried anyway
    # a replica that refused is excluded; once the whole pool is, nothing is left (no other base's replica)
    assert router.choose(BASE, adapter, exclude=[by_address[a] for a in pool_a]) is None
    assert router.choose(BASE, None, exclude=[by_address[a] for a in pool_a]) is None
    await router.close()


async def test_a_base_without_replicas_is_refused_at_once_with_retry_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    router, _, _ = await two_pools(monkeypatch, gateway_inference_refresh_interval_s=2.5)
    started: list[object] = []
    for adapter in ("ft:missing-base:org-a:s:ftjob-1", None):
        with pytest.raises(NoReplica) as refused:
            await router.open_stream("missing-base", adapter, started.append)  # type: ignore[arg-type]
        assert refused.value.retry_after_s == math.ceil(2.5)
        assert "`missing-base`" in refused.value.message
        assert isinstance(refused.value, Unavailable)  # 503: the SDK retries it
    assert started == []
    assert router.serves(BASE) is True and router.serves(OTHER) is True
    assert router.serves("missing-base") is False
    await router.close()


async def test_an_endpoint_whose_base_is_unknown_gets_no_traffic(monkeypatch: pytest.MonkeyPatch) -> None:
    addresses = endpoints(3)
    router = AdapterAffinityRouter(
        GatewaySettings(inference_addr=",".join(addresses)),
        channel_factory=FakeChannel,  # type: ignore[arg-type]
    )
    monkeypatch.setattr(router, "_is_serving", always_serving)
    # before any discovery nothing is known: no pool, and job creation cannot tell
    assert router.pools() == {} and router.choose(BASE, None) is None
    assert router.serves(BASE) is None and router.serves(OTHER) is None
    silent = addresses[2]
    monkeypatch.setattr(router, "_ask_base_model", says_base({silent: None}))
    await router.refresh()
    assert router.pools() == {BASE: addresses[:2]}
    for adapter in ADAPTERS[:200]:
        assert router.choose(BASE, adapter).address != silent  # type: ignore[union-attr]
    assert router.serves(BASE) is True
    assert router.serves(OTHER) is None  # the silent one may be OTHER's replica
    # it answers at the next refresh, and a replica restarted on another base moves pools
    monkeypatch.setattr(router, "_ask_base_model", says_base({silent: OTHER, addresses[0]: OTHER}))
    await router.refresh()
    assert router.pools() == {OTHER: [addresses[0], silent], BASE: [addresses[1]]}
    assert router.serves("third-base") is False
    # a replica that does not answer keeps the base it said (its health is the health check's business)
    monkeypatch.setattr(router, "_ask_base_model", says_base({}, default=None))
    await router.refresh()
    assert router.pools() == {OTHER: [addresses[0], silent], BASE: [addresses[1]]}
    await router.close()


class FakeStub:
    """An InferenceService stub whose GetReplicaInfo answers ``info`` or fails with ``code``."""

    def __init__(self, info: str | None = None, code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE) -> None:
        self.info = info
        self.code = code
        self.unloaded: list[str] = []

    async def GetReplicaInfo(self, request: object, timeout: float) -> object:
        from tailor.inference.v1 import inference_service_pb2 as pb

        if self.info is None:
            raise grpc.aio.AioRpcError(self.code, grpc.aio.Metadata(), grpc.aio.Metadata(), "no")
        return pb.GetReplicaInfoResponse(base_model=self.info, engine="hf")


@pytest.mark.parametrize(
    ("configured", "code", "expected"),
    [
        # a replica from before GetReplicaInfo, in a one-base deployment (a rolling upgrade): that base
        ({BASE: {"source": "builtin:tailor-tiny"}}, grpc.StatusCode.UNIMPLEMENTED, BASE),
        # with several bases configured it could be any of them: unknown
        (
            {BASE: {"source": "builtin:tailor-tiny"}, OTHER: {"source": "builtin:tailor-tiny"}},
            grpc.StatusCode.UNIMPLEMENTED,
            None,
        ),
        ({BASE: {"source": "builtin:tailor-tiny"}}, grpc.StatusCode.UNAVAILABLE, None),
    ],
)
async def test_a_replica_that_cannot_say_its_base(
    configured: dict[str, Any], code: grpc.StatusCode, expected: str | None
) -> None:
    router = AdapterAffinityRouter(
        GatewaySettings(inference_addr="10.0.0.1:50053", base_models=configured),
        channel_factory=FakeChannel,  # type: ignore[arg-type]
    )
    (endpoint,) = router.endpoints
    endpoint.__dict__["stub"] = FakeStub(code=code)
    assert await router._ask_base_model(endpoint) == expected
    endpoint.__dict__["stub"] = FakeStub(OTHER)
    assert await router._ask_base_model(endpoint) == OTHER
    assert endpoint.engine == "hf"
    await router.close()


async def test_broadcast_reaches_the_pool_of_the_base_and_the_unknown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    addresses = endpoints(5)
    router = AdapterAffinityRouter(
        GatewaySettings(inference_addr=",".join(addresses)),
        channel_factory=FakeChannel,  # type: ignore[arg-type]
    )
    monkeypatch.setattr(router, "_is_serving", always_serving)
    monkeypatch.setattr(
        router, "_ask_base_model", says_base({addresses[1]: OTHER, addresses[2]: OTHER, addresses[4]: None})
    )
    await router.refresh()
    for endpoint in router.endpoints:
        endpoint.__dict__["stub"] = endpoint.address

    async def unload(stub: Any) -> str:
        return f"unloaded on {stub}"

    answers = await router.broadcast(OTHER, unload)
    # OTHER's replicas, and the one that has not said its base (another gateway may have used it)
    assert answers == {a: f"unloaded on {a}" for a in (addresses[1], addresses[2], addresses[4])}
    assert set(await router.broadcast(BASE, unload)) == {addresses[0], addresses[3], addresses[4]}
    assert all(e.in_flight == 0 for e in router.endpoints)
    await router.close()


async def test_each_dns_name_keeps_its_own_last_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = {"inference-headless": endpoints(2), "inference-second-headless": ["10.0.1.1:50053"]}
    failing: set[str] = set()

    async def resolve(host: str, port: int) -> list[str]:
        assert port == 50053
        if host in failing:
            raise OSError("temporary failure in name resolution")
        return list(answers[host])

    router = AdapterAffinityRouter(
        GatewaySettings(
            inference_addr="dns:///inference-headless:50053,dns:///inference-second-headless:50053"
        ),
        resolver=resolve,
        channel_factory=FakeChannel,  # type: ignore[arg-type]
    )
    monkeypatch.setattr(router, "_is_serving", always_serving)
    monkeypatch.setattr(
        router, "_ask_base_model", says_base({"10.0.1.1:50053": OTHER, "10.0.1.2:50053": OTHER})
    )
    await router.refresh()
    assert router.pools() == {BASE: endpoints(2), OTHER: ["10.0.1.1:50053"]}
    # the second name blips (an error, then an empty answer) while the first changes: each keeps its own
    failing.add("inference-second-headless")
    answers["inference-headless"] = endpoints(3)
    await router.refresh()
    assert router.pools() == {BASE: endpoints(3), OTHER: ["10.0.1.1:50053"]}
    failing.clear()
    answers["inference-second-headless"] = []
    await router.refresh()
    assert router.pools() == {BASE: endpoints(3), OTHER: ["10.0.1.1:50053"]}
    answers["inference-second-headless"] = ["10.0.1.2:50053"]  # its pod was replaced
    await router.refresh()
    assert router.pools() == {BASE: endpoints(3), OTHER: ["10.0.1.2:50053"]}
    await router.close()
