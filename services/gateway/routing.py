"""Adapter-affinity routing from the gateway to the inference replicas.

Every inference replica serves every adapter, but an adapter a replica has never
seen costs a download from the object store and a load into the engine (a cold
load stalls the whole engine step in vLLM). So each adapter should keep landing on
the same replica, where it stays warm, while many adapters spread over all
replicas. :class:`AdapterAffinityRouter` does this with rendezvous
(highest-random-weight) hashing: each replica gets a score ``hash(replica,
adapter)`` and the adapter goes to the highest-scoring replica that is healthy
and not overloaded, else to the next. Rendezvous hashing needs no ring or
coordination: every gateway replica computes the same order from the same
endpoint list, and when a replica disappears only the adapters it held move
(each to its own second choice), about 1/N of them.

Endpoints come from ``TAILOR_INFERENCE_ADDR``:

- ``dns:///inference-headless:50053`` (or ``dns:inference-headless:50053``): the
  name is resolved every ``TAILOR_GATEWAY_INFERENCE_REFRESH_INTERVAL_S`` and every
  address it returns is a replica. A Kubernetes headless Service returns one A
  record per ready pod.
- ``host1:50053,host2:50053``: a fixed list (local runs, tests).
- ``host:50053``: one endpoint, used as is (gRPC resolves it).

Health is both active and passive: every refresh asks each endpoint's
``grpc.health.v1`` readiness (service ``""``), and a call the replica refuses
(below) marks its endpoint unhealthy at once, until a later check answers
SERVING. Overload is the number of calls this gateway has in flight to an
endpoint against ``TAILOR_GATEWAY_INFERENCE_MAX_IN_FLIGHT``; beyond it the adapter
spills to its second choice, so a hot adapter warms a second replica instead of
queueing on one. Requests for the bare base model (no adapter) go to the least busy
replica.

The router is the only way to the InferenceService: :meth:`AdapterAffinityRouter.open_stream`
(a server-streaming call placed by affinity) and :meth:`AdapterAffinityRouter.broadcast`
(a call every replica must hear) hand out a replica's stub only for the length of a call,
so every call is counted in flight, shows in ``tailor_gateway_inference_routed_total``,
and keeps a leaving replica's channel open until it ends. ``open_stream`` moves on to
the next replica when a call fails before its first message with UNAVAILABLE (the
replica is gone or refuses new calls) or CANCELLED (a replica shutting down cancels the
calls it had accepted but not started): a replica that stops costs the caller nothing.
Generation has no side effect until it streams, so this repeat is safe; once a message
has arrived, a failure is the caller's, since text already sent cannot be taken back.

A replica that leaves discovery (a pod terminating drops out of the headless Service)
drains: it gets no new calls, the calls already running on it, long streams included,
finish, and its channel is closed once the last one ends, or after
``TAILOR_GATEWAY_INFERENCE_DRAIN_TIMEOUT_S`` at the latest. Closing it at once would
cancel those streams mid-answer, though the terminating replica is still finishing them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import itertools
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

import grpc
import structlog
from prometheus_client import Counter, Gauge

from services.common.errors import Unavailable
from services.common.grpc_client import open_channel
from services.gateway.config import GatewaySettings
from services.gateway.health import upstream_status
from tailor.inference.v1 import inference_service_pb2 as pb
from tailor.inference.v1 import inference_service_pb2_grpc as pb_grpc

log = structlog.get_logger("tailor.gateway.routing")

T = TypeVar("T")
# (host, port) -> every address the name resolves to, as "ip:port"
Resolver = Callable[[str, int], Awaitable[list[str]]]
ChannelFactory = Callable[[str], grpc.aio.Channel]
StartStream = Callable[[pb_grpc.InferenceServiceStub], grpc.aio.UnaryStreamCall]

HEALTH_TIMEOUT_S = 1.0
# Codes meaning "this replica did not do it": try the next one. A cancel of our own shows as
# asyncio.CancelledError in grpc.aio, never as an AioRpcError, so CANCELLED here is the server's.
FALLBACK_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED})

ROUTED = Counter(
    "tailor_gateway_inference_routed_total",
    "Inference calls routed, by how the replica was chosen.",
    # first (the adapter's home), spill (home busy or unhealthy), retry (after a refusal), base
    # (no adapter: the least busy), broadcast (one per replica of a call every replica must hear)
    ["choice"],
)
HEALTHY_ENDPOINTS = Gauge(
    "tailor_gateway_inference_endpoints_healthy",
    "Inference replicas this gateway currently considers healthy.",
)
DRAINING_ENDPOINTS = Gauge(
    "tailor_gateway_inference_endpoints_draining",
    "Inference replicas no longer discovered whose running calls this gateway lets finish.",
)


@dataclass(frozen=True)
class InferenceTarget:
    """What ``TAILOR_INFERENCE_ADDR`` names: a DNS name to resolve into replicas, or fixed addresses."""

    dns_host: str | None = None
    dns_port: int | None = None
    static: tuple[str, ...] = ()


def _split_host_port(address: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` -> (host, port); raises ValueError without a valid port."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{address!r} is not host:port")
    return host.strip("[]"), int(port)


def _join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_target(spec: str) -> InferenceTarget:
    """Parses ``dns:///name:port``, ``dns:name:port``, ``a:port,b:port`` or ``host:port``."""
    spec = spec.strip()
    if spec.startswith("dns:"):
        rest = spec.removeprefix("dns:")
        if rest.startswith("//"):
            # gRPC's form is dns:[//authority/]host:port; the authority (a DNS server) is not used here
            _, _, rest = rest[2:].partition("/")
        host, port = _split_host_port(rest)
        return InferenceTarget(dns_host=host, dns_port=port)
    entries = [entry.strip() for entry in spec.split(",") if entry.strip()]
    if not entries:
        raise ValueError("no inference address given")
    for entry in entries:
        _split_host_port(entry)
    return InferenceTarget(static=tuple(dict.fromkeys(entries)))


async def resolve_all(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to, as ``ip:port`` (a headless Service: one per ready pod)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(_join_host_port(str(info[4][0]), port) for info in infos))


def rendezvous_score(endpoint: str, key: str) -> int:
    """A stable 64-bit weight of (endpoint, key): the same in every process (unlike ``hash()``)."""
    digest = hashlib.blake2b(f"{endpoint}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def rank_endpoints(endpoints: Iterable[str], key: str) -> list[str]:
    """Endpoints in ``key``'s order of preference, highest weight first (ties by name)."""
    return sorted(endpoints, key=lambda endpoint: (rendezvous_score(endpoint, key), endpoint), reverse=True)


class Endpoint:
    """One inference replica: its channel, what this gateway has in flight there, and its health."""

    def __init__(self, address: str, channel: grpc.aio.Channel) -> None:
        self.address = address
        self.channel = channel
        self.in_flight = 0
        self.healthy = True  # optimistic until a check or a call says otherwise
        self.idle = asyncio.Event()  # set while nothing is in flight: what a drain waits for
        self.idle.set()
        self.drain: asyncio.Task[None] | None = None  # while no longer discovered

    @functools.cached_property
    def stub(self) -> pb_grpc.InferenceServiceStub:
        return pb_grpc.InferenceServiceStub(self.channel)

    def __repr__(self) -> str:
        return f"Endpoint({self.address}, in_flight={self.in_flight}, healthy={self.healthy})"


def _cancelled_under_us() -> bool:
    """Whether a CancelledError just caught came from the call, not from our own task being cancelled.

    grpc.aio reports a call cancelled from outside (its channel closed) as CancelledError
    in the reader; only a task that is itself being cancelled should end that way.
    """
    task = asyncio.current_task()
    return task is not None and task.cancelling() == 0


class RoutedStream:
    """A server-streaming inference call running on the replica the router chose.

    Iterating it yields the call's messages, the first one (already received when the
    router returns it) included. It holds one unit of its replica's in-flight count
    until the call is over: its last message was read, it failed, or :meth:`cancel`
    was called (the client left). gRPC's done callback releases it too, so a stream
    dropped without either cannot leave a count behind (every call has a deadline).
    """

    def __init__(
        self,
        router: AdapterAffinityRouter,
        endpoint: Endpoint,
        call: grpc.aio.UnaryStreamCall,
        first: pb.GenerateCompletionResponse | object,
    ) -> None:
        self._router = router
        self._endpoint = endpoint
        self._call = call
        self._first: pb.GenerateCompletionResponse | object | None = first
        self._released = False
        call.add_done_callback(lambda _: self._release())

    @property
    def replica(self) -> str:
        """The address of the replica running the call."""
        return self._endpoint.address

    def __aiter__(self) -> RoutedStream:
        return self

    async def __anext__(self) -> pb.GenerateCompletionResponse:
        message = self._first
        self._first = None
        if message is None:
            try:
                message = await self._call.read()
            except asyncio.CancelledError:
                self.cancel()
                if not _cancelled_under_us():
                    raise
                # the channel was closed under the call: its replica's drain timed out
                raise grpc.aio.AioRpcError(
                    grpc.StatusCode.UNAVAILABLE,
                    grpc.aio.Metadata(),
                    grpc.aio.Metadata(),
                    f"inference replica {self.replica} left before the call ended",
                ) from None
            except BaseException:
                self.cancel()
                raise
        if message is grpc.aio.EOF:
            self._release()
            raise StopAsyncIteration
        assert isinstance(message, pb.GenerateCompletionResponse)
        return message

    def cancel(self) -> None:
        """Stops the call upstream (a no-op once it has ended) and releases its replica."""
        if not self._call.done():
            self._call.cancel()
        self._release()

    def _release(self) -> None:
        if not self._released:
            self._released = True
            self._router._release(self._endpoint)


class AdapterAffinityRouter:
    """Sends each adapter to the same inference replicas, with fallback; see the module docstring.

    ``start()`` discovers the endpoints and starts the periodic refresh; ``close()``
    stops it and closes the channels. ``open_stream`` and ``broadcast`` are the calls;
    ``readiness`` is the gateway's readiness as far as inference goes.

    ``channel_factory`` opens the channel of one endpoint (default: ``open_channel``,
    without gRPC's retries). Fallback is this class's job: a channel that itself retried
    a dead replica would only delay the move to the next one. ``resolver`` stands for
    DNS (default: :func:`resolve_all`).
    """

    def __init__(
        self,
        settings: GatewaySettings,
        *,
        resolver: Resolver | None = None,
        channel_factory: ChannelFactory | None = None,
    ) -> None:
        self.target = parse_target(settings.inference_addr)
        self.refresh_interval_s = settings.gateway_inference_refresh_interval_s
        self.max_in_flight = settings.gateway_inference_max_in_flight
        self.drain_timeout_s = settings.gateway_inference_drain_timeout_s
        self._resolver = resolver or resolve_all
        self._channel_factory = channel_factory or (lambda address: open_channel(address, settings))
        self._endpoints: dict[str, Endpoint] = {}
        self._draining: dict[str, Endpoint] = {}
        self._rotation = itertools.count()
        self._refresh_task: asyncio.Task[None] | None = None
        if self.target.static:
            self.set_addresses(self.target.static)

    # -- discovery and health ------------------------------------------------------------

    @property
    def endpoints(self) -> list[Endpoint]:
        """The endpoints currently discovered (not those draining)."""
        return list(self._endpoints.values())

    async def start(self) -> None:
        """Discovers endpoints once, then keeps refreshing them in the background."""
        await self.refresh()
        self._refresh_task = asyncio.create_task(self._refresh_forever())

    async def close(self) -> None:
        """Stops refreshing and draining, and closes every channel."""
        if self._refresh_task is not None:
            self._refresh_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresh_task
        draining = list(self._draining.values())
        drains = [endpoint.drain for endpoint in draining if endpoint.drain is not None]
        for drain in drains:
            drain.cancel()
        await asyncio.gather(*drains, return_exceptions=True)
        for endpoint in [*self._endpoints.values(), *draining]:
            await endpoint.channel.close()
        self._endpoints.clear()
        self._draining.clear()
        DRAINING_ENDPOINTS.set(0)

    async def refresh(self) -> None:
        """Re-resolves a DNS target and asks every endpoint's health."""
        if self.target.dns_host is not None and self.target.dns_port is not None:
            try:
                addresses = await self._resolver(self.target.dns_host, self.target.dns_port)
            except OSError as error:
                addresses = []
                log.warning("inference discovery failed", host=self.target.dns_host, error=str(error))
            # An empty answer is more likely a DNS blip or a rollout's instant than no replicas at
            # all: keep routing to the last known set (health checks still take dead ones out).
            if addresses:
                self.set_addresses(addresses)
        await self.check_health()

    def set_addresses(self, addresses: Iterable[str]) -> None:
        """Makes ``addresses`` the endpoint set: opens channels to new ones, drains vanished ones."""
        wanted = list(dict.fromkeys(addresses))
        for address in wanted:
            if address in self._endpoints:
                continue
            returning = self._draining.pop(address, None)
            if returning is not None:
                # back before its drain ended (a readiness flap): keep its channel and its count
                assert returning.drain is not None
                returning.drain.cancel()
                returning.drain = None
                self._endpoints[address] = returning
                log.info("inference endpoint back", endpoint=address, in_flight=returning.in_flight)
                continue
            self._endpoints[address] = Endpoint(address, self._channel_factory(address))
            log.info("inference endpoint added", endpoint=address)
        for address in [a for a in self._endpoints if a not in wanted]:
            leaving = self._endpoints.pop(address)
            log.info("inference endpoint removed; draining", endpoint=address, in_flight=leaving.in_flight)
            self._draining[address] = leaving
            leaving.drain = asyncio.get_running_loop().create_task(self._drain(leaving))
        DRAINING_ENDPOINTS.set(len(self._draining))

    async def _drain(self, endpoint: Endpoint) -> None:
        """Closes a vanished endpoint's channel once its calls have ended, or at the drain timeout."""
        try:
            await asyncio.wait_for(endpoint.idle.wait(), self.drain_timeout_s)
        except TimeoutError:
            log.warning(
                "inference endpoint drain timed out; closing it under its calls",
                endpoint=endpoint.address,
                in_flight=endpoint.in_flight,
            )
        # out of the draining set before the first await, so a return from now on opens a new channel
        if self._draining.get(endpoint.address) is endpoint:
            del self._draining[endpoint.address]
        DRAINING_ENDPOINTS.set(len(self._draining))
        endpoint.drain = None
        await endpoint.channel.close()
        log.info("inference endpoint closed", endpoint=endpoint.address)

    async def check_health(self) -> None:
        """Asks each endpoint's readiness (health service ``""``) and records the answers."""
        endpoints = self.endpoints
        answers = await asyncio.gather(*(self._is_serving(e) for e in endpoints))
        for endpoint, serving in zip(endpoints, answers, strict=True):
            if endpoint.healthy != serving:
                log.info("inference endpoint health changed", endpoint=endpoint.address, healthy=serving)
            endpoint.healthy = serving
        HEALTHY_ENDPOINTS.set(sum(answers))

    async def _is_serving(self, endpoint: Endpoint) -> bool:
        return await upstream_status(endpoint.channel, HEALTH_TIMEOUT_S) == "SERVING"

    async def readiness(self) -> str:
        """SERVING when the replica a base-model request would go to now says so; else why not."""
        endpoint = self.choose(None)
        if endpoint is None:
            return grpc.StatusCode.UNAVAILABLE.name
        return await upstream_status(endpoint.channel)

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_interval_s)
            try:
                await self.refresh()
            except Exception:  # a refresh failure must not end routing; the next one may succeed
                log.exception("inference refresh failed")

    # -- choosing ------------------------------------------------------------------------

    def ranked(self, adapter: str | None) -> list[Endpoint]:
        """Endpoints in preference order: rendezvous order for an adapter, least busy for the base model."""
        if adapter is not None:
            return [self._endpoints[a] for a in rank_endpoints(self._endpoints, adapter)]
        endpoints = self.endpoints
        if not endpoints:
            return []
        # rotate before the (stable) sort so that equally idle replicas take turns
        start = next(self._rotation) % len(endpoints)
        rotated = endpoints[start:] + endpoints[:start]
        return sorted(rotated, key=lambda e: e.in_flight)

    def choose(self, adapter: str | None, exclude: Iterable[Endpoint] = ()) -> Endpoint | None:
        """The endpoint the next call for ``adapter`` should use, or None when every one is excluded.

        The first healthy endpoint under its in-flight limit, in preference order. When every
        healthy one is at its limit, the least busy of them (queueing somewhere beats failing).
        When none is healthy, the first in order anyway: health may be stale, and a call that
        the replica refuses moves on by itself.
        """
        skipped = set(exclude)
        candidates = [e for e in self.ranked(adapter) if e not in skipped]
        if not candidates:
            return None
        healthy = [e for e in candidates if e.healthy]
        for endpoint in healthy:
            if endpoint.in_flight < self.max_in_flight:
                return endpoint
        if healthy:
            return min(healthy, key=lambda e: e.in_flight)
        return candidates[0]

    # -- calling -------------------------------------------------------------------------

    async def open_stream(self, adapter: str | None, start: StartStream) -> RoutedStream:
        """Starts ``start(stub)`` on ``adapter``'s replica (None: the base model) and waits for its
        first message, moving on to the next replica while one refuses before sending anything.

        Raises the call's error when it fails otherwise, and :class:`Unavailable` when every
        replica refused. The caller iterates the returned stream, or cancels it.
        """
        tried: list[Endpoint] = []
        while True:
            endpoint = self._next(adapter, tried)
            self._acquire(endpoint)
            call: grpc.aio.UnaryStreamCall | None = None
            try:
                call = start(endpoint.stub)
                first = await call.read()
            except grpc.aio.AioRpcError as error:
                self._release(endpoint)
                if error.code() not in FALLBACK_CODES:
                    raise
                self._refused(endpoint, tried, error.details() or error.code().name)
                continue
            except asyncio.CancelledError:
                if call is not None:
                    call.cancel()
                self._release(endpoint)
                if not _cancelled_under_us():
                    raise
                # the channel closed under a call that had sent nothing (its drain timed out)
                self._refused(endpoint, tried, "channel closed")
                continue
            except BaseException:
                if call is not None:
                    call.cancel()
                self._release(endpoint)
                raise
            stream = RoutedStream(self, endpoint, call, first)
            if first is grpc.aio.EOF:
                stream.cancel()  # nothing more will come: release now, not at the done callback
            return stream

    async def broadcast(
        self, invoke: Callable[[pb_grpc.InferenceServiceStub], Awaitable[T]]
    ) -> dict[str, T | grpc.aio.AioRpcError]:
        """Awaits ``invoke(stub)`` on every discovered replica at once, for what every replica
        must hear (unloading a deleted model's adapter): {address: its answer or its error}.

        No fallback: each replica is a target of its own, not a stand-in for another.
        """
        endpoints = self.endpoints

        async def on(endpoint: Endpoint) -> T | grpc.aio.AioRpcError:
            ROUTED.labels("broadcast").inc()
            self._acquire(endpoint)
            try:
                return await invoke(endpoint.stub)
            except grpc.aio.AioRpcError as error:
                return error
            finally:
                self._release(endpoint)

        answers = await asyncio.gather(*(on(endpoint) for endpoint in endpoints))
        return {endpoint.address: answer for endpoint, answer in zip(endpoints, answers, strict=True)}

    def _next(self, adapter: str | None, tried: list[Endpoint]) -> Endpoint:
        endpoint = self.choose(adapter, tried)
        if endpoint is None:
            raise Unavailable("no inference replica is available")
        if tried:
            choice = "retry"
        elif adapter is None:
            choice = "base"
        else:
            home = self.ranked(adapter)
            choice = "first" if home and home[0] is endpoint else "spill"
        ROUTED.labels(choice).inc()
        return endpoint

    def _refused(self, endpoint: Endpoint, tried: list[Endpoint], why: str) -> None:
        """A refused call never ran there: mark the replica down until a health check says otherwise."""
        if endpoint.healthy:
            log.warning("inference endpoint unavailable", endpoint=endpoint.address, error=why)
        endpoint.healthy = False
        tried.append(endpoint)

    def _acquire(self, endpoint: Endpoint) -> None:
        endpoint.in_flight += 1
        endpoint.idle.clear()

    def _release(self, endpoint: Endpoint) -> None:
        endpoint.in_flight -= 1
        if endpoint.in_flight == 0:
            endpoint.idle.set()
