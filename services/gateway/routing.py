"""Routing from the gateway to the inference replicas: the pool of the model's base, adapter affinity within it.

A request goes to the pool of its model's base (an ``ft:`` model's base comes from the
model registry; a base model is its own base): the replicas that said they serve that
base (:mod:`services.gateway.inference_pools` discovers them, checks their health, keeps the
pools and drains a replica that leaves). Everything below happens within that pool. A
request for a base whose pool is empty fails at once with :class:`NoReplica` (503 with
``Retry-After``: a replica may be discovered by the next refresh), and
:meth:`AdapterAffinityRouter.serves` tells job creation whether any replica serves a base
at all (``services/gateway/fine_tuning/serving.py``).

Within a pool, an adapter a replica has never seen costs a download from the object store
and a load into the engine (a cold load stalls the whole engine step in vLLM). So each
adapter should keep landing on the same replica, where it stays warm, while many adapters
spread over the pool. :class:`AdapterAffinityRouter` does this with rendezvous
(highest-random-weight) hashing: each replica gets a score ``hash(replica, adapter)`` and
the adapter goes to the highest-scoring replica that is healthy and not overloaded, else
to the next. Rendezvous hashing needs no ring or coordination: every gateway replica
computes the same order from the same endpoint list, and when a replica disappears only
the adapters it held move (each to its own second choice), about 1/N of them.

Overload is the number of calls this gateway has in flight to an endpoint against
``TAILOR_GATEWAY_INFERENCE_MAX_IN_FLIGHT``; beyond it the adapter spills to its second
choice in the pool, so a hot adapter warms a second replica instead of queueing on one.
Requests for a bare base model (no adapter) go to the least busy replica of its pool.

The router is the only way to the InferenceService: :meth:`AdapterAffinityRouter.open_stream`
(a server-streaming call placed by affinity) and :meth:`AdapterAffinityRouter.broadcast`
(a call every replica of a base must hear) hand out a replica's stub only for the length of
a call, so every call is counted in flight, shows in ``tailor_gateway_inference_routed_total``,
and keeps a leaving replica's channel open until it ends. ``open_stream`` moves on to the
next replica of the pool when a call fails before its first message with UNAVAILABLE (the
replica is gone or refuses new calls) or CANCELLED (a replica shutting down cancels the
calls it had accepted but not started): a replica that stops costs the caller nothing.
Generation has no side effect until it streams, so this repeat is safe; once a message
has arrived, a failure is the caller's, since text already sent cannot be taken back.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import math
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

import grpc
import structlog
from prometheus_client import Counter

from services.common.errors import Unavailable
from services.gateway.config import GatewaySettings
from services.gateway.errors import TemporarilyUnavailable
from services.gateway.inference_pools import ChannelFactory, Endpoint, InferencePools, Resolver
from tailor.inference.v1 import inference_service_pb2 as pb
from tailor.inference.v1 import inference_service_pb2_grpc as pb_grpc

log = structlog.get_logger("tailor.gateway.routing")

T = TypeVar("T")
StartStream = Callable[[pb_grpc.InferenceServiceStub], grpc.aio.UnaryStreamCall]

# Codes meaning "this replica did not do it": try the next one. A cancel of our own shows as
# asyncio.CancelledError in grpc.aio, never as an AioRpcError, so CANCELLED here is the server's.
FALLBACK_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED})

ROUTED = Counter(
    "tailor_gateway_inference_routed_total",
    "Inference calls routed, by how the replica was chosen.",
    # first (the adapter's home), spill (home busy or unhealthy), retry (after a refusal), base
    # (no adapter: the least busy), broadcast (one per replica of a call every replica must hear),
    # no_replica (no discovered replica serves the request's base model)
    ["choice"],
)


class NoReplica(TemporarilyUnavailable):
    """No discovered replica serves the base model: a 503 with ``Retry-After`` (the next refresh may find one)."""

    def __init__(self, base_model: str, retry_after_s: int) -> None:
        super().__init__(
            f"No inference replica serves the base model `{base_model}` right now; retry later.",
            retry_after_s=retry_after_s,
        )
        self.base_model = base_model


def rendezvous_score(endpoint: str, key: str) -> int:
    """A stable 64-bit weight of (endpoint, key): the same in every process (unlike ``hash()``)."""
    digest = hashlib.blake2b(f"{endpoint}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def rank_endpoints(endpoints: Iterable[str], key: str) -> list[str]:
    """Endpoints in ``key``'s order of preference, highest weight first (ties by name)."""
    return sorted(endpoints, key=lambda endpoint: (rendezvous_score(endpoint, key), endpoint), reverse=True)


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

    @property
    def engine(self) -> str:
        """The generation engine of that replica, as it said (``hf``, ``vllm``; empty if it did not)."""
        return self._endpoint.engine

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


class AdapterAffinityRouter(InferencePools):
    """Sends each request to the pool of its base model, each adapter to the same replicas of it,
    with fallback; see the module docstring.

    The pools it extends discover the replicas (``start``, ``close``, ``serves``,
    ``readiness``); ``open_stream`` and ``broadcast`` are the calls.
    """

    def __init__(
        self,
        settings: GatewaySettings,
        *,
        resolver: Resolver | None = None,
        channel_factory: ChannelFactory | None = None,
    ) -> None:
        super().__init__(settings, resolver=resolver, channel_factory=channel_factory)
        self.max_in_flight = settings.gateway_inference_max_in_flight
        self._rotation = itertools.count()

    # -- choosing ------------------------------------------------------------------------

    def ranked(self, base_model: str, adapter: str | None) -> list[Endpoint]:
        """``base_model``'s pool in preference order: rendezvous order for an adapter, least busy
        for the base model itself."""
        pool = self.pool(base_model)
        if adapter is not None:
            by_address = {e.address: e for e in pool}
            return [by_address[a] for a in rank_endpoints(by_address, adapter)]
        if not pool:
            return []
        # rotate before the (stable) sort so that equally idle replicas take turns
        start = next(self._rotation) % len(pool)
        rotated = pool[start:] + pool[:start]
        return sorted(rotated, key=lambda e: e.in_flight)

    def choose(
        self, base_model: str, adapter: str | None, exclude: Iterable[Endpoint] = ()
    ) -> Endpoint | None:
        """The endpoint of ``base_model``'s pool the next call for ``adapter`` should use, or None
        when the pool is empty or every one of it is excluded.

        The first healthy endpoint under its in-flight limit, in preference order. When every
        healthy one is at its limit, the least busy of them (queueing somewhere beats failing).
        When none is healthy, the first in order anyway: health may be stale, and a call that
        the replica refuses moves on by itself.
        """
        return self._first_available(self.ranked(base_model, adapter), exclude)

    def _first_available(self, ranked: list[Endpoint], exclude: Iterable[Endpoint]) -> Endpoint | None:
        """:meth:`choose` over a pool already in preference order."""
        skipped = set(exclude)
        candidates = [e for e in ranked if e not in skipped]
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

    async def open_stream(self, base_model: str, adapter: str | None, start: StartStream) -> RoutedStream:
        """Starts ``start(stub)`` on a replica of ``base_model``, ``adapter``'s (None: the base model
        itself), and waits for its first message, moving on to the pool's next replica while one
        refuses before sending anything.

        Raises the call's error when it fails otherwise, :class:`NoReplica` when no replica serves
        ``base_model``, and :class:`Unavailable` when every replica of it refused. The caller
        iterates the returned stream, or cancels it.
        """
        tried: list[Endpoint] = []
        while True:
            endpoint = self._next(base_model, adapter, tried)
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
        self, base_model: str, invoke: Callable[[pb_grpc.InferenceServiceStub], Awaitable[T]]
    ) -> dict[str, T | grpc.aio.AioRpcError]:
        """Awaits ``invoke(stub)`` on every replica of ``base_model`` at once, for what each must
        hear (unloading a deleted model's adapter): {address: its answer or its error}.

        Replicas that have not said their base yet are asked too: another gateway may have
        sent them the adapter, and asking one that does not hold it costs nothing. No fallback:
        each replica is a target of its own, not a stand-in for another.
        """
        endpoints = [e for e in self.endpoints if e.base_model in (base_model, None)]

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

    def _next(self, base_model: str, adapter: str | None, tried: list[Endpoint]) -> Endpoint:
        ranked = self.ranked(base_model, adapter)  # once per attempt: it hashes every replica
        endpoint = self._first_available(ranked, tried)
        if endpoint is None:
            if not tried:
                ROUTED.labels("no_replica").inc()
                raise NoReplica(base_model, retry_after_s=max(1, math.ceil(self.refresh_interval_s)))
            raise Unavailable("no inference replica is available")
        if tried:
            choice = "retry"
        elif adapter is None:
            choice = "base"
        else:
            choice = "first" if ranked[0] is endpoint else "spill"
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
