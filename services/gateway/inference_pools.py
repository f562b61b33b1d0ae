"""Inference replicas as the gateway knows them: discovered, asked their base model and health,
kept in one pool per base, and drained when they leave.

Each inference replica serves one base model (``TAILOR_INFERENCE_BASE_MODEL``) and says
which through the ``GetReplicaInfo`` RPC. :class:`InferencePools` asks every endpoint it
discovers, at discovery and at every refresh, and keeps one *pool* per base: the
discovered endpoints that answered with that base. An endpoint whose base is not known yet
(it has not answered ``GetReplicaInfo``) is in no pool; a replica that predates the RPC
(UNIMPLEMENTED) counts as serving the configured base when exactly one is configured (a
rolling upgrade), and as unknown otherwise. Choosing a replica of a pool for a request is
:mod:`services.gateway.routing`'s job.

Endpoints come from ``TAILOR_INFERENCE_ADDR``, a comma-separated list of targets, each

- ``dns:///inference-headless:50053`` (or ``dns:inference-headless:50053``): the name is
  resolved every ``TAILOR_GATEWAY_INFERENCE_REFRESH_INTERVAL_S`` and every address it
  returns is a replica. A Kubernetes headless Service returns one A record per ready pod;
  with one inference Deployment per base, the setting lists each one's headless Service
  (``dns:///inference-headless:50053,dns:///inference-second-headless:50053``). An empty
  answer or a failed lookup of one name keeps that name's last answer (a DNS blip or a
  rollout's instant is likelier than no replica at all).
- ``host:50053``: a fixed endpoint (local runs, tests; ``make up`` lists one per base).

Health is both active and passive: every refresh asks each endpoint's ``grpc.health.v1``
readiness (service ``""``), and a call the replica refuses (below) marks its endpoint
unhealthy at once (the router says so: :meth:`~services.gateway.routing.AdapterAffinityRouter.open_stream`),
until a later check answers SERVING.

A replica that leaves discovery (a pod terminating drops out of the headless Service)
drains: it gets no new calls, the calls already running on it, long streams included,
finish, and its channel is closed once the last one ends, or after
``TAILOR_GATEWAY_INFERENCE_DRAIN_TIMEOUT_S`` at the latest. Closing it at once would
cancel those streams mid-answer, though the terminating replica is still finishing them.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import grpc
import structlog
from prometheus_client import Gauge

from services.common.grpc_client import open_channel
from services.gateway.config import GatewaySettings
from services.gateway.health import upstream_status
from tailor.inference.v1 import inference_service_pb2 as pb
from tailor.inference.v1 import inference_service_pb2_grpc as pb_grpc

log = structlog.get_logger("tailor.gateway.routing")

# (host, port) -> every address the name resolves to, as "ip:port"
Resolver = Callable[[str, int], Awaitable[list[str]]]
ChannelFactory = Callable[[str], grpc.aio.Channel]

HEALTH_TIMEOUT_S = 1.0
# GetReplicaInfo's deadline; it is asked without an organization (what a replica serves is no
# tenant's data), at discovery and every refresh, beside the health check.
REPLICA_INFO_TIMEOUT_S = 1.0

HEALTHY_ENDPOINTS = Gauge(
    "tailor_gateway_inference_endpoints_healthy",
    "Inference replicas this gateway currently considers healthy.",
)
POOL_ENDPOINTS = Gauge(
    "tailor_gateway_inference_pool_endpoints",
    "Discovered inference replicas per base model they serve (unknown: not yet said).",
    ["base_model"],
)
DRAINING_ENDPOINTS = Gauge(
    "tailor_gateway_inference_endpoints_draining",
    "Inference replicas no longer discovered whose running calls this gateway lets finish.",
)


@dataclass(frozen=True)
class InferenceTarget:
    """What ``TAILOR_INFERENCE_ADDR`` names: DNS names to resolve into replicas, and fixed addresses."""

    dns: tuple[tuple[str, int], ...] = ()
    static: tuple[str, ...] = ()


def _split_host_port(address: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` -> (host, port); raises ValueError without a valid port."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{address!r} is not host:port")
    return host.strip("[]"), int(port)


def _join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _parse_dns(spec: str) -> tuple[str, int]:
    """``dns:///name:port``, ``dns://server/name:port`` or ``dns:name:port`` -> (name, port)."""
    rest = spec.removeprefix("dns:")
    if rest.startswith("//"):
        # gRPC's form is dns:[//authority/]host:port; the authority (a DNS server) is not used here
        _, _, rest = rest[2:].partition("/")
    return _split_host_port(rest)


def parse_target(spec: str) -> InferenceTarget:
    """Parses a comma-separated list of ``dns:///name:port`` (or ``dns:name:port``) and ``host:port``."""
    entries = [entry.strip() for entry in spec.split(",") if entry.strip()]
    if not entries:
        raise ValueError("no inference address given")
    dns: list[tuple[str, int]] = []
    static: list[str] = []
    for entry in entries:
        if entry.startswith("dns:"):
            dns.append(_parse_dns(entry))
        else:
            _split_host_port(entry)
            static.append(entry)
    return InferenceTarget(dns=tuple(dict.fromkeys(dns)), static=tuple(dict.fromkeys(static)))


async def resolve_all(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to, as ``ip:port`` (a headless Service: one per ready pod)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(_join_host_port(str(info[4][0]), port) for info in infos))


class Endpoint:
    """One inference replica: its channel, its base model, what this gateway has in flight there, its health."""

    def __init__(self, address: str, channel: grpc.aio.Channel) -> None:
        self.address = address
        self.channel = channel
        # what GetReplicaInfo said; None until it has: such an endpoint is in no pool, gets no traffic
        self.base_model: str | None = None
        self.engine = ""
        self.in_flight = 0
        self.healthy = True  # optimistic until a check or a call says otherwise
        self.idle = asyncio.Event()  # set while nothing is in flight: what a drain waits for
        self.idle.set()
        self.drain: asyncio.Task[None] | None = None  # while no longer discovered

    @functools.cached_property
    def stub(self) -> pb_grpc.InferenceServiceStub:
        return pb_grpc.InferenceServiceStub(self.channel)

    def __repr__(self) -> str:
        return (
            f"Endpoint({self.address}, base_model={self.base_model}, in_flight={self.in_flight}, "
            f"healthy={self.healthy})"
        )


class InferencePools:
    """The discovered inference endpoints, their health and base models; see the module docstring.

    ``start()`` discovers the endpoints (and their bases) and starts the periodic refresh;
    ``close()`` stops it and closes the channels; ``serves`` says whether a base has
    replicas; ``readiness`` is the gateway's readiness as far as inference goes.

    ``channel_factory`` opens the channel of one endpoint (default: ``open_channel``,
    without gRPC's retries: moving on from a dead replica is the router's job, and a channel
    that itself retried would only delay it). ``resolver`` stands for DNS (default:
    :func:`resolve_all`).
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
        self.drain_timeout_s = settings.gateway_inference_drain_timeout_s
        # what a replica too old to say its base serves: the one base, when only one is configured
        self._sole_base = next(iter(settings.base_models)) if len(settings.base_models) == 1 else None
        self._resolver = resolver or resolve_all
        self._channel_factory = channel_factory or (lambda address: open_channel(address, settings))
        self._endpoints: dict[str, Endpoint] = {}
        self._draining: dict[str, Endpoint] = {}
        self._answers: dict[tuple[str, int], list[str]] = {}  # each DNS name's last non-empty answer
        self._refresh_task: asyncio.Task[None] | None = None
        self._counted: set[str] = set()  # base_model labels of POOL_ENDPOINTS these pools have set
        if self.target.static:
            self.set_addresses(self.target.static)

    @property
    def endpoints(self) -> list[Endpoint]:
        """The endpoints currently discovered (not those draining), whatever their base."""
        return list(self._endpoints.values())

    def pool(self, base_model: str) -> list[Endpoint]:
        """The discovered endpoints serving ``base_model``."""
        return [e for e in self._endpoints.values() if e.base_model == base_model]

    def pools(self) -> dict[str, list[str]]:
        """{base model: addresses of its replicas}, for logs and tests."""
        pools: dict[str, list[str]] = {}
        for endpoint in self._endpoints.values():
            if endpoint.base_model is not None:
                pools.setdefault(endpoint.base_model, []).append(endpoint.address)
        return pools

    def serves(self, base_model: str) -> bool | None:
        """Whether some discovered replica serves ``base_model``; None when the router cannot tell yet.

        It cannot tell while it has discovered no replica at all, or while a discovered one has
        not said its base (it may be that base's replica). Job creation refuses a base only on
        False (``services/gateway/fine_tuning/serving.py``).
        """
        endpoints = self.endpoints
        if any(e.base_model == base_model for e in endpoints):
            return True
        if not endpoints or any(e.base_model is None for e in endpoints):
            return None
        return False

    async def start(self) -> None:
        """Discovers endpoints and their bases once, then keeps refreshing them in the background."""
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
        """Re-resolves the DNS targets, then asks every endpoint's health and base model."""
        if self.target.dns:
            answers = await asyncio.gather(*(self._resolve(host, port) for host, port in self.target.dns))
            for name, addresses in zip(self.target.dns, answers, strict=True):
                # An empty answer is more likely a DNS blip or a rollout's instant than no replicas
                # at all: keep routing to the name's last known set (health checks take dead ones out).
                if addresses:
                    self._answers[name] = addresses
            known = [address for name in self.target.dns for address in self._answers.get(name, [])]
            self.set_addresses([*self.target.static, *known])
        await self.check_health()

    async def _resolve(self, host: str, port: int) -> list[str]:
        try:
            return await self._resolver(host, port)
        except OSError as error:
            log.warning("inference discovery failed", host=host, error=str(error))
            return []

    def set_addresses(self, addresses: Iterable[str]) -> None:
        """Makes ``addresses`` the endpoint set: opens channels to new ones, drains vanished ones."""
        wanted = list(dict.fromkeys(addresses))
        for address in wanted:
            if address in self._endpoints:
                continue
            returning = self._draining.pop(address, None)
            if returning is not None:
                # back before its drain ended (a readiness flap): keep its channel, count and base
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
            log.info(
                "inference endpoint removed; draining",
                endpoint=address,
                base_model=leaving.base_model,
                in_flight=leaving.in_flight,
            )
            self._draining[address] = leaving
            leaving.drain = asyncio.get_running_loop().create_task(self._drain(leaving))
        DRAINING_ENDPOINTS.set(len(self._draining))
        self._count_pools()

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
        """Asks each endpoint's readiness (health service ``""``) and base model, and records the answers."""
        endpoints = self.endpoints
        healths, bases = await asyncio.gather(
            asyncio.gather(*(self._is_serving(e) for e in endpoints)),
            asyncio.gather(*(self._ask_base_model(e) for e in endpoints)),
        )
        for endpoint, serving, base_model in zip(endpoints, healths, bases, strict=True):
            if endpoint.healthy != serving:
                log.info("inference endpoint health changed", endpoint=endpoint.address, healthy=serving)
            endpoint.healthy = serving
            # no answer keeps what it said before: an unreachable replica is the health check's business
            if base_model is not None and base_model != endpoint.base_model:
                log.info(
                    "inference endpoint serves a base model",
                    endpoint=endpoint.address,
                    base_model=base_model,
                    before=endpoint.base_model,
                    engine=endpoint.engine,
                )
                endpoint.base_model = base_model
        HEALTHY_ENDPOINTS.set(sum(healths))
        self._count_pools()

    async def _is_serving(self, endpoint: Endpoint) -> bool:
        return await upstream_status(endpoint.channel, HEALTH_TIMEOUT_S) == "SERVING"

    async def _ask_base_model(self, endpoint: Endpoint) -> str | None:
        """The base model the replica says it serves (GetReplicaInfo, no organization); None: no answer."""
        try:
            info: pb.GetReplicaInfoResponse = await endpoint.stub.GetReplicaInfo(
                pb.GetReplicaInfoRequest(), timeout=REPLICA_INFO_TIMEOUT_S
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.UNIMPLEMENTED and self._sole_base is not None:
                return self._sole_base  # a replica from before GetReplicaInfo, in a one-base deployment
            if endpoint.base_model is None:
                log.info(
                    "inference endpoint has not said its base model; no traffic until it does",
                    endpoint=endpoint.address,
                    grpc_status=error.code().name,
                )
            return None
        endpoint.engine = info.engine
        return info.base_model or None

    def _count_pools(self) -> None:
        counts = collections.Counter(e.base_model or "unknown" for e in self._endpoints.values())
        for base_model in {*counts, *self._counted}:
            POOL_ENDPOINTS.labels(base_model).set(counts.get(base_model, 0))
        self._counted = set(counts)

    async def readiness(self) -> str:
        """SERVING when the least busy replica of any base says so; else why not.

        A gateway with some base's replicas down still serves every other base, so one
        base's outage does not take it out of its load balancer.
        """
        known = [e for e in self.endpoints if e.base_model is not None]
        if not known:
            return grpc.StatusCode.UNAVAILABLE.name
        endpoint = min([e for e in known if e.healthy] or known, key=lambda e: e.in_flight)
        return await upstream_status(endpoint.channel)

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_interval_s)
            try:
                await self.refresh()
            except Exception:  # a refresh failure must not end routing; the next one may succeed
                log.exception("inference refresh failed")
