"""Real gRPC servers on 127.0.0.1 for integration tests, built with the services' own lifecycle."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence

import grpc

from services.common.grpc_client import open_channel
from services.common.grpc_server import GrpcServer, ReadinessCheck, ServiceRegistration
from services.common.settings import CommonSettings
from services.common.tenancy import call_context


@contextlib.asynccontextmanager
async def serving(
    settings: CommonSettings,
    services: Sequence[ServiceRegistration],
    *,
    readiness_checks: Sequence[ReadinessCheck] = (),
    idempotent_methods: Sequence[str] = (),
) -> AsyncIterator[grpc.aio.Channel]:
    """Starts a GrpcServer on a free loopback port and yields a client channel to it."""
    server = GrpcServer(settings, "127.0.0.1:0", services, readiness_checks=readiness_checks)
    port = await server.start()
    channel = open_channel(f"127.0.0.1:{port}", settings, idempotent_methods=idempotent_methods)
    try:
        yield channel
    finally:
        await channel.close()
        await server.stop()


def as_organization(organization: str) -> contextlib.AbstractContextManager[None]:
    """Makes the calls inside the block carry ``organization``, as the gateway's would."""
    return call_context(organization, None)
