"""Liveness and readiness of the gateway: ``/healthz`` and ``/readyz``.

Ready means every upstream gRPC service answers its health check with SERVING (for
inference: the least busy replica of any base model, see
:meth:`services.gateway.routing.AdapterAffinityRouter.readiness`), so a load balancer
sends no traffic to a gateway whose dependencies are down.
"""

from __future__ import annotations

import grpc
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from grpc_health.v1 import health_pb2, health_pb2_grpc

router = APIRouter()

HEALTH_TIMEOUT_S = 2.0


async def upstream_status(channel: grpc.aio.Channel, timeout_s: float = HEALTH_TIMEOUT_S) -> str:
    """SERVING, NOT_SERVING, or the gRPC error code name when the service cannot be asked."""
    try:
        response = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=timeout_s
        )
    except grpc.aio.AioRpcError as error:
        return error.code().name
    return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)


@router.get("/healthz", include_in_schema=False)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", include_in_schema=False)
async def readyz(request: Request) -> JSONResponse:
    upstreams: dict[str, str] = await request.app.state.upstreams.readiness()
    ready = all(status == "SERVING" for status in upstreams.values())
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "upstreams": upstreams},
        status_code=200 if ready else 503,
    )
