"""Adapter-affinity routing on the request path: the gateway's HTTP API over several real replicas.

Each replica is a real ``GrpcServer`` (the services' own lifecycle: health, the tenancy
interceptor, graceful stop) on 127.0.0.1 serving the real ``tailor.inference.v1``
contract. Its servicer is a stand-in whose reply names the replica that answered
(``replica-1|done``), so a test sees where each request went; generation itself is the
inference service's own tests' business. The gateway is the real app on uvicorn, with
the dataset and trainer fakes of the gateway's unit tests behind it for the model registry.

Everything is driven as a user would: chat completions (plain and streamed) and legacy
completions over HTTP, the fallback and spill counts read from ``/metrics``. Load comes
from real concurrent streams a replica holds open; discovery changes come from the DNS
answer the router re-reads, and a closed channel shows as this process holding no more
TCP connection to the replica.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import inspect
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import httpx
import openai
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.common.errors import InvalidArgument
from services.common.grpc_server import GrpcServer, ServiceRegistration
from services.common.settings import CommonSettings
from services.common.tenancy import current_organization
from services.gateway import inference_pools
from services.gateway.routing import rank_endpoints
from tailor.inference.v1 import inference_service_pb2 as pb
from tailor.inference.v1 import inference_service_pb2_grpc as pb_grpc
from tailor.trainer.v1 import model_registry_service_pb2 as registry_pb
from tests.unit.gateway.conftest import Gateway, running_gateway
from tests.unit.gateway.fakes import BASE_MODEL, SLASHED_BASE_MODEL

INFERENCE = pb.DESCRIPTOR.services_by_name["InferenceService"].full_name
ADAPTERS = [f"ft:{BASE_MODEL}:org-a:s{i}:ftjob-{i:04d}" for i in range(24)]
# a second base model (the fakes' registry lists it beside BASE_MODEL), and adapters trained on it
SECOND_BASE = SLASHED_BASE_MODEL
SECOND_ADAPTERS = [f"ft:{SECOND_BASE}:org-a:s{i}:ftjob-{i:04d}" for i in range(100, 106)]
TWO_BASES = {BASE_MODEL: {"source": "builtin:tailor-tiny"}, SECOND_BASE: {"source": "builtin:tailor-tiny"}}
# graceful stop lets in-flight streams finish; short so the tests stay fast
REPLICA_SETTINGS = CommonSettings(grpc_shutdown_grace_s=2.0, rpc_timeout_s=10.0, grpc_reflection=False)
# what a user sends to have the replica refuse the request itself (not the replica being down)
REFUSED_PROMPT = "please refuse"
DNS_NAME = "dns:///inference-headless:50053"


class ReplicaServicer(pb_grpc.InferenceServiceServicer):
    """Streams its replica's name, then ``|done``; counts what it served per adapter.

    While ``hold`` is set to an unset event, each stream waits after its first delta until
    the event is set: that is how a test keeps real calls in flight on a replica.
    """

    def __init__(self, name: str, base_model: str = BASE_MODEL) -> None:
        self.name = name
        self.base_model = base_model
        self.served: collections.Counter[str] = collections.Counter()
        self.unloaded: list[str] = []
        self.hold: asyncio.Event | None = None
        self.cancelled = asyncio.Event()

    async def GenerateCompletion(
        self, request: pb.GenerateCompletionRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.GenerateCompletionResponse]:
        assert current_organization() == "org-a"
        self.served[request.adapter.name or "<base>"] += 1
        hold = self.hold  # as the call starts: a test may change it once the first delta is out
        if any(message.content == REFUSED_PROMPT for message in request.chat.messages):
            raise InvalidArgument("this replica refuses the request", param="messages")
        try:
            yield pb.GenerateCompletionResponse(deltas=[pb.ChoiceDelta(index=0, text=self.name)])
            if hold is not None:
                await hold.wait()
            for piece in ("|", "done"):
                yield pb.GenerateCompletionResponse(deltas=[pb.ChoiceDelta(index=0, text=piece)])
            yield pb.GenerateCompletionResponse(
                deltas=[pb.ChoiceDelta(index=0, finish_reason=pb.FINISH_REASON_STOP)],
                usage=pb.Usage(prompt_tokens=1, completion_tokens=3),
            )
        except asyncio.CancelledError:
            self.cancelled.set()
            raise

    async def UnloadAdapter(
        self, request: pb.UnloadAdapterRequest, context: grpc.aio.ServicerContext
    ) -> pb.UnloadAdapterResponse:
        self.unloaded.append(request.name)
        return pb.UnloadAdapterResponse(unloaded=True)

    async def GetReplicaInfo(
        self, request: pb.GetReplicaInfoRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetReplicaInfoResponse:
        return pb.GetReplicaInfoResponse(base_model=self.base_model, engine="hf")


class Replica:
    """One inference server on a free loopback port, serving ``base_model``."""

    def __init__(self, name: str, base_model: str = BASE_MODEL) -> None:
        self.servicer = ReplicaServicer(name, base_model)
        self.server = GrpcServer(
            REPLICA_SETTINGS,
            "127.0.0.1:0",
            [ServiceRegistration(INFERENCE, pb_grpc.add_InferenceServiceServicer_to_server, self.servicer)],
        )
        self.port = 0

    @property
    def name(self) -> str:
        return self.servicer.name

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.port = await self.server.start()

    async def stop(self) -> None:
        """A graceful stop: NOT_SERVING, new calls refused, running ones finish (again: a no-op)."""
        await self.server.stop()

    async def kill(self) -> None:
        """Stops at once, cancelling the calls it is running: a crash, as far as a client can tell."""
        await self.server.server.stop(grace=None)


@contextlib.asynccontextmanager
async def replicas(n: int, *, bases: tuple[str, ...] = ()) -> AsyncIterator[list[Replica]]:
    """``n`` replicas of BASE_MODEL, or one per entry of ``bases``, each serving that base."""
    started = [Replica(f"replica-{i}", base) for i, base in enumerate(bases or (BASE_MODEL,) * n)]
    for replica in started:
        await replica.start()
    try:
        yield started
    finally:
        for replica in started:
            if replica.servicer.hold is not None:
                replica.servicer.hold.set()
            await replica.stop()


def fine_tuned(name: str, base_model: str = BASE_MODEL) -> registry_pb.Model:
    return registry_pb.Model(
        id=name,
        kind=registry_pb.MODEL_KIND_FINE_TUNED,
        base_model=base_model,
        owned_by="org-a",
        created=1,
        adapter_uri=f"orgs/org-a/adapters/{name}",
        lora_rank=8,
    )


@contextlib.asynccontextmanager
async def gateway_over(tmp_path: Path, fleet: list[Replica], **overrides: Any) -> AsyncIterator[Gateway]:
    """The gateway routing to ``fleet`` (a fixed list unless ``inference_addr`` says otherwise).

    Health checks run once at start unless a test shortens the refresh interval, so only
    the calls themselves tell the router a replica is gone.
    """
    settings: dict[str, Any] = {
        "inference_addr": ",".join(replica.address for replica in fleet),
        "gateway_inference_refresh_interval_s": 3600.0,
        **overrides,
    }
    async with running_gateway(tmp_path, **settings) as gateway:
        for adapter in ADAPTERS:
            gateway.fakes.registry.register(fine_tuned(adapter))
        yield gateway


class HeadlessService:
    """What DNS answers for the inference headless Service: the test adds and removes replicas."""

    def __init__(self, fleet: list[Replica]) -> None:
        self.addresses = [replica.address for replica in fleet]

    async def resolve(self, host: str, port: int) -> list[str]:
        assert (host, port) == ("inference-headless", 50053)
        return list(self.addresses)


def replica_named(fleet: list[Replica], text: str) -> Replica:
    """The replica whose name a reply starts with."""
    name = text.partition("|")[0]
    return next(replica for replica in fleet if replica.name == name)


def home_of(adapter: str, fleet: list[Replica]) -> list[Replica]:
    """``fleet`` in ``adapter``'s rendezvous order: what every gateway computes."""
    by_address = {replica.address: replica for replica in fleet}
    return [by_address[address] for address in rank_endpoints(by_address, adapter)]


# -- talking to the gateway --------------------------------------------------------------------


def chat_body(model: str, *, stream: bool = False, content: str = "hello") -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": content}], "stream": stream}


async def chat(http: httpx.AsyncClient, model: str) -> str:
    """A plain chat completion; the reply's text."""
    response = await http.post("/v1/chat/completions", json=chat_body(model))
    assert response.status_code == 200, response.text
    return str(response.json()["choices"][0]["message"]["content"])


async def complete(http: httpx.AsyncClient, model: str) -> str:
    """A legacy text completion; the reply's text."""
    response = await http.post("/v1/completions", json={"model": model, "prompt": "hello"})
    assert response.status_code == 200, response.text
    return str(response.json()["choices"][0]["text"])


class ChatStream:
    """A streamed chat completion read event by event, as an SDK would."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()
        self.text = ""
        self.error: dict[str, Any] | None = None
        self.done = False

    @classmethod
    async def open(cls, http: httpx.AsyncClient, model: str) -> ChatStream:
        """Starts the stream and reads up to its first text (a replica is then running it)."""
        request = http.build_request("POST", "/v1/chat/completions", json=chat_body(model, stream=True))
        stream = cls(await http.send(request, stream=True))
        assert stream.response.status_code == 200
        while not stream.text:
            assert await stream._next_event(), "the stream ended before any text"
        return stream

    async def read_to_end(self) -> ChatStream:
        while await self._next_event():
            pass
        await self.response.aclose()
        return self

    async def _next_event(self) -> bool:
        """Reads one event; False at the end of the stream."""
        async for line in self._lines:
            if not line.startswith("data: "):
                continue
            payload = line.removeprefix("data: ")
            if payload == "[DONE]":
                self.done = True
                return False
            event = json.loads(payload)
            if "error" in event:
                self.error = event["error"]
                return True
            for choice in event["choices"]:
                self.text += choice["delta"].get("content") or ""
            return True
        return False


async def streamed_chat(http: httpx.AsyncClient, model: str) -> str:
    stream = await (await ChatStream.open(http, model)).read_to_end()
    assert stream.done and stream.error is None
    return stream.text


async def metric(http: httpx.AsyncClient, name: str, **labels: str) -> float:
    """A sample of the gateway's /metrics (0 when absent)."""
    text = (await http.get("/metrics/")).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


async def routed(http: httpx.AsyncClient, choice: str) -> float:
    return await metric(http, "tailor_gateway_inference_routed_total", choice=choice)


async def draining(http: httpx.AsyncClient, count: int) -> bool:
    return await metric(http, "tailor_gateway_inference_endpoints_draining") == count


async def healthy(http: httpx.AsyncClient, count: int) -> bool:
    return await metric(http, "tailor_gateway_inference_endpoints_healthy") == count


async def eventually(check: Callable[[], bool | Awaitable[bool]], timeout_s: float = 5.0) -> None:
    """Waits until ``check()`` holds (it may be a coroutine function); fails after ``timeout_s``."""
    async with asyncio.timeout(timeout_s):
        while True:
            result = check()
            if await result if inspect.isawaitable(result) else result:
                return
            await asyncio.sleep(0.02)


def connected_to(replica: Replica) -> bool:
    """Whether this process holds an open TCP connection to the replica (a gateway channel's)."""
    return any(
        connection.raddr
        and connection.raddr.port == replica.port
        and connection.status == psutil.CONN_ESTABLISHED
        for connection in psutil.Process().net_connections(kind="tcp")
    )


# -- affinity ----------------------------------------------------------------------------------


async def test_each_adapter_sticks_to_its_rendezvous_replica_on_every_endpoint(tmp_path: Path) -> None:
    adapters = ADAPTERS[:12]
    async with replicas(3) as fleet, gateway_over(tmp_path, fleet) as gateway, gateway.http() as http:
        for adapter in adapters:
            home = home_of(adapter, fleet)[0].name
            for ask in (chat, streamed_chat, complete):
                assert (await ask(http, adapter)).partition("|")[0] == home
        # the homes cover every replica: adapters spread (how evenly is the unit tests' business)
        for replica in fleet:
            homed = {adapter for adapter in adapters if home_of(adapter, fleet)[0] is replica}
            assert homed and replica.servicer.served == {adapter: 3 for adapter in homed}

        # base-model requests (no adapter) take turns over the idle replicas
        answered = {(await chat(http, BASE_MODEL)).partition("|")[0] for _ in range(6)}
        assert answered == {r.name for r in fleet}


# -- fallback ----------------------------------------------------------------------------------


async def test_a_stopped_replica_costs_no_request_and_the_fallback_is_counted(tmp_path: Path) -> None:
    async with replicas(3) as fleet, gateway_over(tmp_path, fleet) as gateway, gateway.http() as http:
        victim = fleet[1]
        homed_on_victim = [a for a in ADAPTERS if home_of(a, fleet)[0] is victim]
        assert len(homed_on_victim) >= 3
        retries_before = await routed(http, "retry")
        await victim.stop()

        for i, adapter in enumerate(homed_on_victim):
            ask = (chat, streamed_chat, complete)[i % 3]
            assert await ask(http, adapter) == f"{home_of(adapter, fleet)[1].name}|done"
        # the first request found the replica gone and moved on; the router then knew
        # (until a health check says otherwise) and sent the others straight to their second choice
        assert await routed(http, "retry") == retries_before + 1
        assert victim.servicer.served.total() == 0


async def test_a_replica_stopped_under_load_fails_no_request(tmp_path: Path) -> None:
    async with replicas(3) as fleet, gateway_over(tmp_path, fleet) as gateway, gateway.http() as http:
        victim = fleet[2]
        failures: list[BaseException] = []
        completed = 0
        stop_load = asyncio.Event()

        async def load(worker: int) -> None:
            nonlocal completed
            asks = (chat, streamed_chat, complete)
            i = worker
            while not stop_load.is_set():
                try:
                    await asks[i % 3](http, ADAPTERS[i % len(ADAPTERS)])
                    completed += 1
                except Exception as error:  # any failure is what the test is about
                    failures.append(error)
                i += 5

        retries_before = await routed(http, "retry")
        workers = [asyncio.create_task(load(w)) for w in range(6)]
        await eventually(lambda: victim.servicer.served.total() >= 5)
        await victim.stop()  # NOT_SERVING, refuse new calls, let the running ones finish
        served_by_victim = victim.servicer.served.total()
        completed_at_stop = completed
        await eventually(lambda: completed >= completed_at_stop + 30)
        stop_load.set()
        await asyncio.gather(*workers)

        assert failures == []
        assert victim.servicer.served.total() == served_by_victim
        assert await routed(http, "retry") > retries_before


async def test_a_replica_down_from_the_start_is_skipped(tmp_path: Path) -> None:
    async with replicas(2) as fleet:
        await fleet[0].stop()
        async with gateway_over(tmp_path, fleet) as gateway, gateway.http() as http:
            # the first health check already found it down: nothing is even tried there
            retries_before = await routed(http, "retry")
            answered = {(await chat(http, adapter)).partition("|")[0] for adapter in ADAPTERS[:8]}
            assert answered == {fleet[1].name}
            assert await routed(http, "retry") == retries_before


async def test_a_refusal_of_the_request_itself_is_not_retried_on_another_replica(tmp_path: Path) -> None:
    async with replicas(3) as fleet, gateway_over(tmp_path, fleet) as gateway, gateway.http() as http:
        adapter = ADAPTERS[0]
        response = await http.post(
            "/v1/chat/completions", json=chat_body(adapter, stream=True, content=REFUSED_PROMPT)
        )
        assert response.status_code == 400 and response.json()["error"]["param"] == "messages"
        assert [r.servicer.served.total() for r in home_of(adapter, fleet)] == [1, 0, 0]


async def test_a_stream_whose_replica_dies_after_sending_text_is_not_replayed(tmp_path: Path) -> None:
    async with replicas(2) as fleet, gateway_over(tmp_path, fleet) as gateway, gateway.http() as http:
        adapter = ADAPTERS[1]
        home, other = home_of(adapter, fleet)
        home.servicer.hold = asyncio.Event()
        retries_before = await routed(http, "retry")
        stream = await ChatStream.open(http, adapter)
        assert stream.text == home.name

        await home.kill()
        await stream.read_to_end()
        # the client keeps the text it had and learns the answer broke off; nothing is repeated
        assert stream.text == home.name and not stream.done
        assert stream.error is not None and stream.error["type"] == "server_error"
        assert other.servicer.served.total() == 0
        assert await routed(http, "retry") == retries_before


async def test_a_client_that_leaves_gives_its_place_on_the_replica_back(tmp_path: Path) -> None:
    async with (
        replicas(2) as fleet,
        gateway_over(tmp_path, fleet, gateway_inference_max_in_flight=1) as gateway,
        gateway.http() as http,
    ):
        adapter = ADAPTERS[6]
        home = home_of(adapter, fleet)[0]
        home.servicer.hold = asyncio.Event()  # never set: only the clients leaving end these calls

        stream = await ChatStream.open(http, adapter)
        await stream.response.aclose()  # leaves mid-stream
        await asyncio.wait_for(home.servicer.cancelled.wait(), timeout=5)
        home.servicer.cancelled.clear()
        with pytest.raises(httpx.ReadTimeout):  # a plain request whose client gives up waiting
            await http.post("/v1/chat/completions", json=chat_body(adapter), timeout=httpx.Timeout(0.3))
        await asyncio.wait_for(home.servicer.cancelled.wait(), timeout=5)

        home.servicer.hold = None
        # with the limit at one call, a place still held by either would send this elsewhere
        assert await chat(http, adapter) == f"{home.name}|done"


# -- load --------------------------------------------------------------------------------------


async def test_a_full_home_spills_to_the_next_replica_then_queues_on_the_least_busy(tmp_path: Path) -> None:
    async with (
        replicas(2) as fleet,
        gateway_over(tmp_path, fleet, gateway_inference_max_in_flight=2) as gateway,
        gateway.http() as http,
    ):
        adapter = ADAPTERS[2]
        home, second = home_of(adapter, fleet)
        release = asyncio.Event()
        for replica in fleet:
            replica.servicer.hold = release
        spills_before = await routed(http, "spill")

        streams = [await ChatStream.open(http, adapter) for _ in range(5)]
        # two fill the home, the next two its second choice, and with both full the fifth
        # waits on the least busy (the home, first in order) rather than failing
        assert [s.text for s in streams] == [home.name, home.name, second.name, second.name, home.name]
        assert await routed(http, "spill") == spills_before + 2

        release.set()
        for stream in streams:
            await stream.read_to_end()
            assert stream.done and stream.text.endswith("|done")
        # the calls are over: the home takes the adapter again
        assert await chat(http, adapter) == f"{home.name}|done"


async def test_base_model_requests_go_around_a_busy_replica(tmp_path: Path) -> None:
    async with replicas(3) as fleet, gateway_over(tmp_path, fleet) as gateway, gateway.http() as http:
        release = asyncio.Event()
        for replica in fleet:
            replica.servicer.hold = release
        held = await ChatStream.open(http, BASE_MODEL)
        busy = replica_named(fleet, held.text)
        for replica in fleet:
            replica.servicer.hold = None

        answered = collections.Counter([(await chat(http, BASE_MODEL)).partition("|")[0] for _ in range(6)])
        assert busy.name not in answered and len(answered) == 2
        release.set()
        await held.read_to_end()


# -- discovery ---------------------------------------------------------------------------------


async def test_a_replica_leaving_discovery_finishes_its_stream_then_is_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with replicas(3) as fleet:
        dns = HeadlessService(fleet)
        monkeypatch.setattr(inference_pools, "resolve_all", dns.resolve)
        async with (
            gateway_over(
                tmp_path, fleet, inference_addr=DNS_NAME, gateway_inference_refresh_interval_s=0.05
            ) as gateway,
            gateway.http() as http,
        ):
            adapter = ADAPTERS[3]
            leaving, second, _ = home_of(adapter, fleet)
            leaving.servicer.hold = asyncio.Event()
            stream = await ChatStream.open(http, adapter)
            assert stream.text == leaving.name

            dns.addresses.remove(leaving.address)  # its pod is terminating: out of the Service
            await eventually(lambda: draining(http, 1))
            # new requests go elsewhere at once, while the stream still runs on its connection
            assert await chat(http, adapter) == f"{second.name}|done"
            assert leaving.servicer.served.total() == 1
            assert connected_to(leaving)

            leaving.servicer.hold.set()
            await stream.read_to_end()
            assert stream.done and stream.error is None
            assert stream.text == f"{leaving.name}|done"
            # its last call over, the drained replica's channel is closed
            await eventually(lambda: not connected_to(leaving))
            assert await draining(http, 0)


async def test_a_drain_past_its_timeout_ends_the_stream_with_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with replicas(2) as fleet:
        dns = HeadlessService(fleet)
        monkeypatch.setattr(inference_pools, "resolve_all", dns.resolve)
        async with (
            gateway_over(
                tmp_path,
                fleet,
                inference_addr=DNS_NAME,
                gateway_inference_refresh_interval_s=0.05,
                gateway_inference_drain_timeout_s=0.3,
            ) as gateway,
            gateway.http() as http,
        ):
            adapter = ADAPTERS[4]
            leaving = home_of(adapter, fleet)[0]
            leaving.servicer.hold = asyncio.Event()  # never set: a stream that would outlive the drain
            stream = await ChatStream.open(http, adapter)

            dns.addresses.remove(leaving.address)
            async with asyncio.timeout(5):
                await stream.read_to_end()
            # not a silent cut: the client is told the answer broke off, and generation stopped
            assert stream.text == leaving.name and not stream.done
            assert stream.error is not None and stream.error["type"] == "server_error"
            await asyncio.wait_for(leaving.servicer.cancelled.wait(), timeout=5)
            await eventually(lambda: not connected_to(leaving))


async def test_a_replica_found_by_dns_takes_its_share_and_only_that_moves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with replicas(3) as fleet:
        dns = HeadlessService(fleet[:2])
        monkeypatch.setattr(inference_pools, "resolve_all", dns.resolve)
        async with (
            gateway_over(
                tmp_path, fleet, inference_addr=DNS_NAME, gateway_inference_refresh_interval_s=0.05
            ) as gateway,
            gateway.http() as http,
        ):
            adapters = ADAPTERS[:12]
            before = {adapter: await chat(http, adapter) for adapter in adapters}
            assert {reply.partition("|")[0] for reply in before.values()} == {fleet[0].name, fleet[1].name}

            dns.addresses.append(fleet[2].address)  # the Deployment scaled up
            await eventually(lambda: healthy(http, 3))
            after = {adapter: await chat(http, adapter) for adapter in adapters}
            moved = {adapter for adapter in adapters if before[adapter] != after[adapter]}
            # exactly the adapters that rank the new replica first, and nothing else
            assert moved == {adapter for adapter in adapters if home_of(adapter, fleet)[0] is fleet[2]}
            assert moved and all(after[adapter] == f"{fleet[2].name}|done" for adapter in moved)


async def test_deleting_a_model_unloads_its_adapter_on_every_replica(tmp_path: Path) -> None:
    async with replicas(3) as fleet, gateway_over(tmp_path, fleet) as gateway, gateway.http() as http:
        await fleet[2].stop()  # one replica cannot be reached: the deletion still succeeds
        broadcasts_before = await routed(http, "broadcast")
        response = await http.delete(f"/v1/models/{ADAPTERS[5]}")
        assert response.status_code == 200 and response.json()["deleted"] is True
        assert [r.servicer.unloaded for r in fleet] == [[ADAPTERS[5]], [ADAPTERS[5]], []]
        assert await routed(http, "broadcast") == broadcasts_before + 3


# -- one pool per base model -------------------------------------------------------------------


async def test_each_base_model_is_served_by_its_own_replicas(tmp_path: Path) -> None:
    bases = (BASE_MODEL, BASE_MODEL, SECOND_BASE, SECOND_BASE)
    async with (
        replicas(0, bases=bases) as fleet,
        gateway_over(tmp_path, fleet, base_models=TWO_BASES) as gateway,
        gateway.http() as http,
    ):
        for adapter in SECOND_ADAPTERS:
            gateway.fakes.registry.register(fine_tuned(adapter, SECOND_BASE))
        pool_a, pool_b = fleet[:2], fleet[2:]
        # adapters: their home within their base's pool (rendezvous over that pool only)
        for adapter in ADAPTERS[:8]:
            assert (await chat(http, adapter)).partition("|")[0] == home_of(adapter, pool_a)[0].name
        for adapter in SECOND_ADAPTERS:
            for ask in (chat, streamed_chat, complete):
                assert (await ask(http, adapter)).partition("|")[0] == home_of(adapter, pool_b)[0].name
        # base models: within their pool, taking turns
        assert {replica_named(fleet, await chat(http, BASE_MODEL)) for _ in range(6)} == set(pool_a)
        assert {replica_named(fleet, await chat(http, SECOND_BASE)) for _ in range(6)} == set(pool_b)
        # a pool whose replicas refuse falls back within itself, never to another base's replica
        await pool_b[0].stop()
        for adapter in SECOND_ADAPTERS:
            assert replica_named(fleet, await chat(http, adapter)) is pool_b[1]
        await pool_b[1].stop()
        response = await http.post("/v1/chat/completions", json=chat_body(SECOND_ADAPTERS[0]))
        assert response.status_code == 503
        assert sum(pool_a[0].servicer.served.values()) + sum(pool_a[1].servicer.served.values()) == 8 + 6
        # deleting a model unloads its adapter on its base's replicas only
        response = await http.delete(f"/v1/models/{ADAPTERS[3]}")
        assert response.status_code == 200
        assert [r.servicer.unloaded for r in fleet] == [[ADAPTERS[3]], [ADAPTERS[3]], [], []]


async def test_a_base_model_without_a_replica_is_a_503_with_retry_after(tmp_path: Path) -> None:
    async with (
        replicas(1) as fleet,
        gateway_over(
            tmp_path, fleet, base_models=TWO_BASES, gateway_inference_refresh_interval_s=3.0
        ) as gateway,
        gateway.http() as http,
    ):
        gateway.fakes.registry.register(fine_tuned(SECOND_ADAPTERS[0], SECOND_BASE))
        for model in (SECOND_BASE, SECOND_ADAPTERS[0]):
            for stream in (False, True):
                response = await asyncio.wait_for(
                    http.post("/v1/chat/completions", json=chat_body(model, stream=stream)), 5
                )
                assert response.status_code == 503
                assert response.headers["retry-after"] == "3"
                error = response.json()["error"]
                assert error["type"] == "server_error"
                assert f"`{SECOND_BASE}`" in error["message"] and "retry" in error["message"]
        assert await routed(http, "no_replica") >= 4
        assert await chat(http, BASE_MODEL) == "replica-0|done"  # the served base is unaffected


async def test_a_job_on_a_base_no_replica_serves_is_refused_naming_model(tmp_path: Path) -> None:
    async with (
        replicas(1) as fleet,
        gateway_over(tmp_path, fleet, base_models=TWO_BASES) as gateway,
    ):
        gateway.fakes.registry.register(fine_tuned(SECOND_ADAPTERS[0], SECOND_BASE))
        client = gateway.sdk()
        for model in (SECOND_BASE, SECOND_ADAPTERS[0]):
            with pytest.raises(openai.BadRequestError) as refused:
                await client.fine_tuning.jobs.create(model=model, training_file="file-abc")
            body = refused.value.body
            assert isinstance(body, dict)
            assert body["param"] == "model" and body["code"] == "model_not_available"
            assert f"base model `{SECOND_BASE}`" in body["message"]
            assert "no inference replica serves" in body["message"].lower()
            assert f"Base models served: {BASE_MODEL}." in body["message"]
        assert gateway.fakes.trainer.requests == []  # refused before the trainer
        # a served base passes the check: the trainer answers (here about the missing file)
        with pytest.raises(openai.BadRequestError) as refused:
            await client.fine_tuning.jobs.create(model=BASE_MODEL, training_file="file-abc")
        assert refused.value.param == "training_file"  # type: ignore[attr-defined]
        # an unknown model is the trainer's to answer, as before
        with pytest.raises(openai.BadRequestError) as refused:
            await client.fine_tuning.jobs.create(model="no-such-model", training_file="file-abc")
        assert refused.value.param == "model"  # type: ignore[attr-defined]
        assert len(gateway.fakes.trainer.requests) == 2


async def test_before_any_replica_said_its_base_jobs_are_not_refused(tmp_path: Path) -> None:
    # the only replica is down from the start: the router cannot tell which bases are served
    async with replicas(1) as fleet:
        await fleet[0].stop()
        async with gateway_over(tmp_path, fleet, base_models=TWO_BASES) as gateway:
            client = gateway.sdk()
            with pytest.raises(openai.BadRequestError) as refused:
                await client.fine_tuning.jobs.create(model=SECOND_BASE, training_file="file-abc")
            assert refused.value.param == "training_file"  # type: ignore[attr-defined]
