"""Adapter-affinity routing over real gRPC: several inference servers on 127.0.0.1.

Each replica is a real ``GrpcServer`` (the services' own lifecycle: health, the
tenancy interceptor, graceful stop) serving the real ``tailor.inference.v1``
contract. Its servicer is a stand-in that streams back which replica answered, so
the test sees where each request went; generation itself is the inference
service's own tests' business. What is checked is what a user of several replicas
would see: an adapter always lands on the same replica, adapters spread over all
of them, a new replica takes its share, and stopping a replica in the middle of a
load moves its adapters without one failed request.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator

import grpc

from services.common.grpc_server import GrpcServer, ServiceRegistration
from services.common.settings import CommonSettings
from services.common.tenancy import current_organization
from services.gateway.routing import ROUTED, AdapterAffinityRouter, rank_endpoints
from tailor.inference.v1 import inference_service_pb2 as pb
from tailor.inference.v1 import inference_service_pb2_grpc as pb_grpc
from tests.support.grpc_services import as_organization

INFERENCE = pb.DESCRIPTOR.services_by_name["InferenceService"].full_name
ADAPTERS = [f"ft:tailor-tiny:org-test:s{i}:ftjob-{i:04d}" for i in range(48)]
# graceful stop lets in-flight streams finish; short so the test stays fast
SETTINGS = CommonSettings(grpc_shutdown_grace_s=2.0, rpc_timeout_s=10.0, grpc_reflection=False)


class ReplicaServicer(pb_grpc.InferenceServiceServicer):
    """Streams its replica's name back, in a few deltas, and counts what it served per adapter."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.served: collections.Counter[str] = collections.Counter()

    async def GenerateCompletion(
        self, request: pb.GenerateCompletionRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.GenerateCompletionResponse]:
        assert current_organization() == "org-test"
        self.served[request.adapter.name or "<base>"] += 1
        for piece in (self.name, "|", "done"):
            await asyncio.sleep(0.002)  # long enough that a stop finds streams in flight
            yield pb.GenerateCompletionResponse(deltas=[pb.ChoiceDelta(index=0, text=piece)])
        yield pb.GenerateCompletionResponse(
            deltas=[pb.ChoiceDelta(index=0, finish_reason=pb.FINISH_REASON_STOP)],
            usage=pb.Usage(prompt_tokens=1, completion_tokens=3),
        )


class Replica:
    """One inference server on a free loopback port."""

    def __init__(self, name: str) -> None:
        self.servicer = ReplicaServicer(name)
        self.server = GrpcServer(
            SETTINGS,
            "127.0.0.1:0",
            [ServiceRegistration(INFERENCE, pb_grpc.add_InferenceServiceServicer_to_server, self.servicer)],
        )
        self.address = ""

    async def start(self) -> None:
        self.address = f"127.0.0.1:{await self.server.start()}"

    async def stop(self) -> None:
        await self.server.stop()


@contextlib.asynccontextmanager
async def replicas(n: int) -> AsyncIterator[list[Replica]]:
    started = [Replica(f"replica-{i}") for i in range(n)]
    for replica in started:
        await replica.start()
    try:
        yield started
    finally:
        for replica in started:
            await replica.stop()


async def generate(router: AdapterAffinityRouter, adapter: str | None) -> str:
    """One chat request through the router; returns the name of the replica that answered."""
    request = pb.GenerateCompletionRequest(
        base_model="tailor-tiny",
        adapter=pb.AdapterRef(name=adapter, uri=f"adapters/{adapter}", base_model="tailor-tiny", lora_rank=8)
        if adapter
        else None,
        chat=pb.ChatInput(messages=[pb.ChatMessage(role="user", content="hello")]),
    )
    text = []
    with as_organization("org-test"):
        async for response in router.stream(
            adapter,
            lambda channel: pb_grpc.InferenceServiceStub(channel).GenerateCompletion(request, timeout=10),
        ):
            text.extend(delta.text for delta in response.deltas)
    name, _, rest = "".join(text).partition("|")
    assert rest == "done"
    return name


def by_address(fleet: list[Replica]) -> dict[str, str]:
    return {replica.address: replica.servicer.name for replica in fleet}


async def test_each_adapter_sticks_to_one_replica_and_adapters_spread_over_all() -> None:
    async with replicas(3) as fleet:
        router = AdapterAffinityRouter(",".join(r.address for r in fleet), SETTINGS)
        await router.start()
        try:
            where: dict[str, set[str]] = collections.defaultdict(set)
            for _ in range(3):
                for adapter in ADAPTERS:
                    where[adapter].add(await generate(router, adapter))
            assert all(len(names) == 1 for names in where.values())
            # the replica is the one rendezvous hashing predicts, so every gateway agrees on it
            names = by_address(fleet)
            for adapter in ADAPTERS:
                assert where[adapter] == {names[rank_endpoints(names, adapter)[0]]}
            load = collections.Counter(next(iter(names_)) for names_ in where.values())
            assert set(load) == {r.servicer.name for r in fleet}
            # (how evenly is the unit tests' business, over 10,000 adapters; 48 only show all are used)

            # base-model requests (no adapter) take turns over the idle replicas
            base = collections.Counter([await generate(router, None) for _ in range(9)])
            assert set(base) == {r.servicer.name for r in fleet}
        finally:
            await router.close()


async def test_a_stopped_replica_loses_its_adapters_without_a_failed_request() -> None:
    async with replicas(3) as fleet:
        # no health check during the test: only the calls refused by the stopped replica can
        # move its adapters, so what is checked is the fallback itself
        router = AdapterAffinityRouter(",".join(r.address for r in fleet), SETTINGS, refresh_interval_s=3600)
        await router.start()
        retries_before = ROUTED.labels("retry")._value.get()
        try:
            before = {adapter: await generate(router, adapter) for adapter in ADAPTERS}
            victim = fleet[1]
            assert victim.servicer.name in before.values()

            failures: list[BaseException] = []
            completed = 0
            stop_load = asyncio.Event()

            async def load(worker: int) -> None:
                nonlocal completed
                i = worker
                while not stop_load.is_set():
                    try:
                        await generate(router, ADAPTERS[i % len(ADAPTERS)])
                        completed += 1
                    except Exception as error:  # any failure is what the test is about
                        failures.append(error)
                    i += 7

            workers = [asyncio.create_task(load(w)) for w in range(6)]
            await asyncio.sleep(0.3)
            in_flight_at_stop = sum(e.in_flight for e in router.endpoints)
            await victim.stop()  # NOT_SERVING, refuse new calls, let the in-flight ones finish
            await asyncio.sleep(0.6)
            stop_load.set()
            await asyncio.gather(*workers)

            assert failures == []
            assert completed > 50
            assert in_flight_at_stop > 0  # the stop really happened under load
            assert not router._endpoints[victim.address].healthy
            assert ROUTED.labels("retry")._value.get() > retries_before

            after = {adapter: await generate(router, adapter) for adapter in ADAPTERS}
            survivors = [a for a in by_address(fleet) if a != victim.address]
            names = by_address(fleet)
            for adapter in ADAPTERS:
                if before[adapter] == victim.servicer.name:
                    # its second choice, the same one every gateway would pick
                    assert after[adapter] == names[rank_endpoints(survivors, adapter)[0]]
                else:
                    assert after[adapter] == before[adapter]
        finally:
            await router.close()


async def test_a_replica_found_by_dns_takes_its_share_and_only_that_moves() -> None:
    async with replicas(3) as fleet:
        answer = [r.address for r in fleet[:2]]

        async def headless_service(host: str, port: int) -> list[str]:
            # what a headless Service's A records would give, as loopback ports
            assert (host, port) == ("inference-headless", 50053)
            return list(answer)

        router = AdapterAffinityRouter("dns:///inference-headless:50053", SETTINGS, resolver=headless_service)
        await router.start()
        try:
            assert all(e.healthy for e in router.endpoints)  # real health checks answered SERVING
            before = {adapter: await generate(router, adapter) for adapter in ADAPTERS}
            assert set(before.values()) == {fleet[0].servicer.name, fleet[1].servicer.name}

            answer.append(fleet[2].address)  # the Deployment scaled up
            await router.refresh()
            after = {adapter: await generate(router, adapter) for adapter in ADAPTERS}
            moved = [a for a in ADAPTERS if before[a] != after[a]]
            assert moved and all(after[a] == fleet[2].servicer.name for a in moved)
            # exactly the adapters that rank the new replica first, and nothing else
            assert set(moved) == {a for a in ADAPTERS if rank_endpoints(answer, a)[0] == fleet[2].address}
        finally:
            await router.close()


async def test_a_replica_down_from_the_start_is_skipped() -> None:
    async with replicas(2) as fleet:
        await fleet[0].stop()
        router = AdapterAffinityRouter(",".join(r.address for r in fleet), SETTINGS)
        await router.start()  # the first health check already finds it down
        try:
            answered = {await generate(router, adapter) for adapter in ADAPTERS[:12]}
            assert answered == {fleet[1].servicer.name}
        finally:
            await router.close()
