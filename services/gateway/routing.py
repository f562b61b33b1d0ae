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
  name is resolved periodically and every address it returns is a replica. A
  Kubernetes headless Service returns one A record per ready pod.
- ``host1:50053,host2:50053``: a fixed list (local runs, tests).
- ``host:50053``: one endpoint, used as is (gRPC resolves it).

Health is both active and passive: every refresh asks each endpoint's
``grpc.health.v1`` readiness (service ``""``), and a call the replica refuses
(below) marks its endpoint unhealthy at once, until a later check answers
SERVING. Overload is the number of calls this gateway has in flight to an
endpoint against ``max_in_flight``; beyond it the adapter spills to its second
choice, so a hot adapter warms a second replica instead of queueing on one.
Requests for the bare base model (no adapter) go to the least busy replica.

:meth:`AdapterAffinityRouter.run` (unary) and :meth:`AdapterAffinityRouter.stream`
(server streaming) retry on the next replica when a call fails before any response
arrived with UNAVAILABLE (the replica is gone or refuses new calls) or CANCELLED (a
replica shutting down cancels the calls it had accepted but not started): a
replica that stops costs the caller nothing. Every InferenceService call may be
repeated this way (generation has no side effect until it streams; loading and
unloading adapters are idempotent). Once a stream has produced a message, a
failure is the caller's, since the text already sent cannot be taken back.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

import grpc
import structlog
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import Counter, Gauge

from services.common.errors import Unavailable
from services.common.grpc_client import open_channel
from services.common.settings import CommonSettings

log = structlog.get_logger("tailor.gateway.routing")

T = TypeVar("T")
# (host, port) -> every address the name resolves to, as "ip:port"
Resolver = Callable[[str, int], Awaitable[list[str]]]
ChannelFactory = Callable[[str], grpc.aio.Channel]

DEFAULT_REFRESH_INTERVAL_S = 5.0
DEFAULT_MAX_IN_FLIGHT = 64
DEFAULT_HEALTH_TIMEOUT_S = 1.0
# Codes meaning "this replica did not do it": try the next one. A cancel of our own shows as
# asyncio.CancelledError in grpc.aio, never as an AioRpcError, so CANCELLED here is the server's.
FALLBACK_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED})

ROUTED = Counter(
    "tailor_gateway_inference_routed_total",
    "Inference calls routed, by how the replica was chosen.",
    # first (the adapter's home), spill (home busy or unhealthy), retry (after a refusal), base
    ["choice"],
)
HEALTHY_ENDPOINTS = Gauge(
    "tailor_gateway_inference_endpoints_healthy",
    "Inference replicas this gateway currently considers healthy.",
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
        self.retired = False  # no longer discovered: closed once its last call ends

    def __repr__(self) -> str:
        return f"Endpoint({self.address}, in_flight={self.in_flight}, healthy={self.healthy})"


class AdapterAffinityRouter:
    """Sends each adapter to the same inference replicas, with fallback; see the module docstring.

    ``start()`` discovers the endpoints and starts the periodic refresh; ``close()``
    stops it and closes the channels. ``run`` and ``stream`` make a call with
    fallback and in-flight accounting; ``channel_for`` only picks a channel (the
    single-endpoint ``InferenceEndpoints`` interface); ``all_channels`` reaches every
    replica.

    ``channel_factory`` opens the channel of one endpoint (default: ``open_channel``
    without retries). Fallback is this class's job: a channel that itself retried a
    dead replica would only delay the move to the next one.
    """

    def __init__(
        self,
        target: str,
        settings: CommonSettings,
        *,
        refresh_interval_s: float = DEFAULT_REFRESH_INTERVAL_S,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        health_timeout_s: float = DEFAULT_HEALTH_TIMEOUT_S,
        resolver: Resolver = resolve_all,
        channel_factory: ChannelFactory | None = None,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.target = parse_target(target)
        self.refresh_interval_s = refresh_interval_s
        self.max_in_flight = max_in_flight
        self.health_timeout_s = health_timeout_s
        self._resolver = resolver
        self._channel_factory = channel_factory or (lambda address: open_channel(address, settings))
        self._endpoints: dict[str, Endpoint] = {}
        self._retiring: set[Endpoint] = set()
        self._rotation = itertools.count()
        self._refresh_task: asyncio.Task[None] | None = None
        if self.target.static:
            self.set_addresses(self.target.static)

    # -- discovery and health ------------------------------------------------------------

    @property
    def endpoints(self) -> list[Endpoint]:
        """The endpoints currently discovered."""
        return list(self._endpoints.values())

    async def start(self) -> None:
        """Discovers endpoints once, then keeps refreshing them in the background."""
        await self.refresh()
        self._refresh_task = asyncio.create_task(self._refresh_forever())

    async def close(self) -> None:
        """Stops refreshing and closes every channel."""
        if self._refresh_task is not None:
            self._refresh_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresh_task
        for endpoint in [*self._endpoints.values(), *self._retiring]:
            await endpoint.channel.close()
        self._endpoints.clear()
        self._retiring.clear()

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
        """Makes ``addresses`` the endpoint set: opens channels to new ones, retires vanished ones."""
        wanted = list(dict.fromkeys(addresses))
        for address in wanted:
            if address not in self._endpoints:
                self._endpoints[address] = Endpoint(address, self._channel_factory(address))
                log.info("inference endpoint added", endpoint=address)
        for address in [a for a in self._endpoints if a not in wanted]:
            endpoint = self._endpoints.pop(address)
            endpoint.retired = True
            log.info("inference endpoint removed", endpoint=address, in_flight=endpoint.in_flight)
            # calls still streaming from it finish first; the channel closes after the last one
            if endpoint.in_flight:
                self._retiring.add(endpoint)
            else:
                _close_soon(endpoint)

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
        try:
            response = await health_pb2_grpc.HealthStub(endpoint.channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=self.health_timeout_s
            )
        except grpc.aio.AioRpcError:
            return False
        return response.status == health_pb2.HealthCheckResponse.SERVING

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

    def all_channels(self) -> list[grpc.aio.Channel]:
        """One channel per discovered replica, for what every replica must hear (unloading a
        deleted model's adapter)."""
        return [endpoint.channel for endpoint in self._endpoints.values()]

    def channel_for(self, adapter_name: str | None) -> grpc.aio.Channel:
        """The channel of the replica ``adapter_name`` should go to (no fallback, no accounting)."""
        endpoint = self.choose(adapter_name)
        if endpoint is None:
            raise Unavailable("no inference replica is available")
        return endpoint.channel

    # -- calling -------------------------------------------------------------------------

    async def run(self, adapter: str | None, call: Callable[[grpc.aio.Channel], Awaitable[T]]) -> T:
        """Awaits ``call(channel)`` on the adapter's replica, moving on to the next when it refuses."""
        tried: list[Endpoint] = []
        while True:
            endpoint = self._next(adapter, tried)
            self._acquire(endpoint)
            try:
                return await call(endpoint.channel)
            except grpc.aio.AioRpcError as error:
                if not self._retryable(error, endpoint, tried):
                    raise
            finally:
                self._release(endpoint)

    async def stream(
        self, adapter: str | None, call: Callable[[grpc.aio.Channel], AsyncIterator[T]]
    ) -> AsyncIterator[T]:
        """Yields what ``call(channel)`` streams; moves on to the next replica when one refuses,
        only while nothing has been received yet."""
        tried: list[Endpoint] = []
        while True:
            endpoint = self._next(adapter, tried)
            self._acquire(endpoint)
            received = False
            responses: AsyncIterator[T] | None = None
            try:
                responses = call(endpoint.channel)
                async for message in responses:
                    received = True
                    yield message
                return
            except grpc.aio.AioRpcError as error:
                if received or not self._retryable(error, endpoint, tried):
                    raise
            finally:
                # a consumer that stops early (client gone) must not leave generation running
                cancel = getattr(responses, "cancel", None)  # a grpc call; plain iterators have none
                if cancel is not None:
                    cancel()
                self._release(endpoint)

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

    def _retryable(self, error: grpc.aio.AioRpcError, endpoint: Endpoint, tried: list[Endpoint]) -> bool:
        """A refused call never ran there: mark the replica down and try another."""
        if error.code() not in FALLBACK_CODES:
            return False
        if endpoint.healthy:
            log.warning("inference endpoint unavailable", endpoint=endpoint.address, error=error.details())
        endpoint.healthy = False
        tried.append(endpoint)
        return True

    def _acquire(self, endpoint: Endpoint) -> None:
        endpoint.in_flight += 1

    def _release(self, endpoint: Endpoint) -> None:
        endpoint.in_flight -= 1
        if endpoint.retired and endpoint.in_flight == 0 and endpoint in self._retiring:
            self._retiring.discard(endpoint)
            _close_soon(endpoint)


_closing: set[asyncio.Task[None]] = set()


def _close_soon(endpoint: Endpoint) -> None:
    """Closes a retired endpoint's channel in the background (``set_addresses`` is synchronous)."""
    task = asyncio.get_running_loop().create_task(endpoint.channel.close())
    _closing.add(task)  # keep a reference until done, or the task may be collected mid-flight
    task.add_done_callback(_closing.discard)
