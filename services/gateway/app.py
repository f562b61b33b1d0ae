"""Builds the gateway's FastAPI application: the OpenAI-compatible API over the gRPC services.

Layout, as vLLM's OpenAI layer: per resource a ``router`` (routes), a ``protocol``
(pydantic models of OpenAI's shapes) and a ``serving`` module (the logic calling gRPC).
Around them: :mod:`.auth` (API keys, organizations, rate limit), :mod:`.errors` (the one
mapping of failures to OpenAI's envelope), :mod:`.middleware` (request id, access log,
metrics), :mod:`.sse` (streaming) and :mod:`.upstream` (the gRPC clients). Health,
readiness and Prometheus metrics are served beside the API.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from prometheus_client import make_asgi_app

from services.gateway import health
from services.gateway.auth import ApiKeys, RateLimiter
from services.gateway.chat.router import router as chat_router
from services.gateway.chat.serving import OpenAIServingChat
from services.gateway.completions.router import router as completions_router
from services.gateway.completions.serving import OpenAIServingCompletions
from services.gateway.config import GatewaySettings
from services.gateway.errors import install_error_handlers
from services.gateway.files.router import router as files_router
from services.gateway.files.serving import OpenAIServingFiles
from services.gateway.fine_tuning.router import router as fine_tuning_router
from services.gateway.fine_tuning.serving import OpenAIServingFineTuning
from services.gateway.middleware import RequestContextMiddleware
from services.gateway.models.router import router as models_router
from services.gateway.models.serving import OpenAIServingModels
from services.gateway.protocol import ErrorResponse
from services.gateway.upstream import Upstreams

VERSION = "0.1.0"
# Documented on every API route: what each failure looks like (the body is always the envelope).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in {
        400: "The request is invalid; `param` names the field.",
        401: "Missing or wrong API key.",
        404: "No such object in the caller's organization.",
        429: "Over the API key's rate limit; see `Retry-After`.",
        503: "An internal service is unavailable; retry.",
    }.items()
}


def create_app(settings: GatewaySettings) -> FastAPI:
    """The gateway application; upstream channels open and close with its lifespan."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        upstreams = Upstreams(settings)
        await upstreams.start()
        app.state.upstreams = upstreams
        app.state.files_serving = OpenAIServingFiles(upstreams, settings)
        app.state.fine_tuning_serving = OpenAIServingFineTuning(upstreams, settings)
        app.state.models_serving = OpenAIServingModels(upstreams)
        app.state.chat_serving = OpenAIServingChat(upstreams, settings)
        app.state.completions_serving = OpenAIServingCompletions(upstreams, settings)
        yield
        await upstreams.close()

    app = FastAPI(title="Tailor", version=VERSION, lifespan=lifespan)
    app.state.settings = settings
    app.state.api_keys = ApiKeys(settings.api_key_organizations(), settings.gateway_api_keys_file)
    app.state.rate_limiter = RateLimiter(settings.gateway_rate_limit_per_minute)
    install_error_handlers(app)
    app.add_middleware(RequestContextMiddleware)
    for router in (files_router, fine_tuning_router, models_router, chat_router, completions_router):
        app.include_router(router, responses=ERROR_RESPONSES)
    app.include_router(health.router)
    app.mount("/metrics", make_asgi_app())
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document without its default 422 answers, which this API never gives (it answers 400)."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
        for path_item in schema["paths"].values():
            for operation in path_item.values():
                operation.get("responses", {}).pop("422", None)
        for name in ("HTTPValidationError", "ValidationError"):
            schema.get("components", {}).get("schemas", {}).pop(name, None)
        app.openapi_schema = schema
    return app.openapi_schema
