"""The one gRPC server lifecycle every Tailor service runs.

``grpc.aio`` server with explicit message-size limits, the interceptor of
:mod:`services.common.grpc_interceptors` (which authenticates every caller, see
:mod:`services.common.internal_auth`), standard health checking (anonymous) and
(optionally) reflection (authenticated peers only). Health has two names: ``liveness`` answers SERVING while the process
runs, and the overall status ``""`` (what readiness probes ask) follows the
service's readiness checks, so a dependency outage takes the pod out of the load
balancer without restarting it. On SIGTERM or SIGINT the server reports
NOT_SERVING, stops accepting calls and lets in-flight ones finish for the grace
period.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from services.common.grpc_interceptors import ServerCallInterceptor
from services.common.internal_auth.keys import InternalAuthConfigError
from services.common.internal_auth.policy import AUDIENCE_OF_SERVICE
from services.common.internal_auth.setup import check_internal_auth, token_verifier
from services.common.settings import CommonSettings

log = structlog.get_logger("tailor.server")

LIVENESS_SERVICE = "liveness"
READINESS_INTERVAL_S = 5.0

ReadinessCheck = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class ServiceRegistration:
    """A servicer and how to add it: ``add`` is the generated ``add_XServicer_to_server``."""

    full_name: str
    add: Callable[[Any, grpc.aio.Server], None]
    servicer: Any


def server_options(settings: CommonSettings) -> list[tuple[str, Any]]:
    return [
        ("grpc.max_receive_message_length", settings.grpc_max_message_bytes),
        ("grpc.max_send_message_length", settings.grpc_max_message_bytes),
        # let clients keep idle channels open with keepalive pings without being cut off
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ]


class GrpcServer:
    """A started-once, stopped-once gRPC server with health, reflection and the common interceptor."""

    def __init__(
        self,
        settings: CommonSettings,
        listen: str,
        services: Sequence[ServiceRegistration] = (),
        *,
        readiness_checks: Sequence[ReadinessCheck] = (),
    ) -> None:
        self.settings = settings
        self.listen = listen
        self.services = list(services)
        self.readiness_checks = list(readiness_checks)
        self.health = health.aio.HealthServicer()
        verifier = None
        if not settings.internal_auth_disabled:
            # The tokens this server accepts are those addressed to the identity serving its services.
            audiences = {AUDIENCE_OF_SERVICE[r.full_name] for r in self.services if r.full_name in AUDIENCE_OF_SERVICE}
            try:
                verifier = token_verifier(settings, audiences)
            except InternalAuthConfigError as error:
                raise SystemExit(f"refusing to start: {error}") from None
        self.server = grpc.aio.server(
            interceptors=[ServerCallInterceptor(verifier)], options=server_options(settings)
        )
        self.port: int | None = None
        self._readiness_task: asyncio.Task[None] | None = None

    async def start(self) -> int:
        """Binds, starts serving and returns the bound port (useful with port 0 in tests)."""
        for registration in self.services:
            registration.add(registration.servicer, self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        if self.settings.grpc_reflection:
            names = [r.full_name for r in self.services]
            reflection.enable_server_reflection(
                (*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
                self.server,
            )
        self.port = self.server.add_insecure_port(self.listen)
        if self.port == 0:
            raise RuntimeError(f"could not bind gRPC server to {self.listen}")
        await self.server.start()
        await self.health.set(LIVENESS_SERVICE, health_pb2.HealthCheckResponse.SERVING)
        await self._update_readiness()
        self._readiness_task = asyncio.create_task(self._watch_readiness())
        log.info("serving", listen=self.listen, port=self.port, services=[r.full_name for r in self.services])
        return self.port

    async def stop(self) -> None:
        """Reports NOT_SERVING, then lets in-flight calls finish for the configured grace."""
        if self._readiness_task is not None:
            self._readiness_task.cancel()
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace=self.settings.grpc_shutdown_grace_s)
        log.info("stopped")

    async def _update_readiness(self) -> None:
        ready = True
        for check in self.readiness_checks:
            try:
                await check()
            except Exception as exc:  # a failed check only marks the server not ready
                ready = False
                log.warning("not ready", check=getattr(check, "__qualname__", repr(check)), error=str(exc))
        status = health_pb2.HealthCheckResponse.SERVING if ready else health_pb2.HealthCheckResponse.NOT_SERVING
        await self.health.set("", status)
        for registration in self.services:
            await self.health.set(registration.full_name, status)

    async def _watch_readiness(self) -> None:
        while True:
            await asyncio.sleep(READINESS_INTERVAL_S)
            await self._update_readiness()


async def serve_until_signalled(server: GrpcServer, *, metrics_port: int | None = None) -> None:
    """Runs ``server`` until SIGTERM or SIGINT, then shuts it down gracefully (a service's own
    resources close in its server's ``stop``)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if metrics_port:
        start_http_server(metrics_port, addr=server.listen.rsplit(":", 1)[0].strip("[]") or "0.0.0.0")
    await server.start()
    await stop.wait()
    log.info("shutting down", grace_s=server.settings.grpc_shutdown_grace_s)
    await server.stop()


def run_service(
    service: str,
    settings: CommonSettings,
    build: Callable[[], GrpcServer],
    *,
    metrics_port: int | None = None,
) -> None:
    """The body of every ``python -m services.<service>``: logging, then serve until signalled."""
    from services.common.logging import configure_logging

    configure_logging(service, level=settings.log_level, fmt=settings.log_format)
    # Every service verifies its callers; all but the dataset service also sign calls of their own.
    check_internal_auth(settings, signs=service != "dataset")

    async def main() -> None:
        await serve_until_signalled(build(), metrics_port=metrics_port)

    asyncio.run(main())
