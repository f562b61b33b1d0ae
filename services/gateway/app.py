"""Builds the gateway's FastAPI application: the OpenAI-compatible API over the gRPC services.

Layout, as vLLM's OpenAI layer: per resource a ``router`` (routes), a ``protocol``
(pydantic models of OpenAI's shapes) and a ``serving`` module (the logic calling gRPC).
Around them: :mod:`.auth` (API keys, organizations, rate limit) checked by
:mod:`.request_guard` before a body is read (with the JSON body limit), :mod:`.errors` (the
one mapping of failures to OpenAI's envelope), :mod:`.middleware` (request id, access log,
metrics), :mod:`.sse` (streaming) and :mod:`.upstream` (the gRPC clients). Health,
readiness and Prometheus metrics are served beside the API.
"""

from __future__ import annotations

import asyncio
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
from services.gateway.evals.router import router as evals_router
from services.gateway.evals.sampler import EvalSampler, chat_generator
from services.gateway.files.router import router as files_router
from services.gateway.files.serving import OpenAIServingFiles
from services.gateway.fine_tuning.router import router as fine_tuning_router
from services.gateway.fine_tuning.serving import OpenAIServingFineTuning
from services.gateway.middleware import RequestContextMiddleware
from services.gateway.models.router import router as models_router
from services.gateway.models.serving import OpenAIServingModels
from services.gateway.protocol import ErrorResponse
from services.gateway.request_guard import RequestGuard
from services.gateway.ui import install_dashboard
from services.gateway.upstream import Upstreams
from services.gateway.webhooks.router import router as webhooks_router

VERSION = "0.1.0"
# Documented on every API route: what each failure looks like (the body is always the envelope).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in {
        400: "The request is invalid; `param` names the field.",
        401: "Missing or wrong API key.",
        404: "No such object in the caller's organization.",
        413: "The request body is over the gateway's limit (`TAILOR_GATEWAY_MAX_JSON_BODY_BYTES`).",
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
        sampler = None
        if settings.gateway_eval_sampler_enabled:
            app.state.eval_sampler = EvalSampler(
                upstreams.evals, chat_generator(upstreams, settings), settings
            )
            sampler = asyncio.create_task(app.state.eval_sampler.run_forever(), name="eval-sampler")
        yield
        if sampler is not None:
            sampler.cancel()
            await asyncio.gather(sampler, return_exceptions=True)
        await upstreams.close()

    app = FastAPI(title="Tailor", version=VERSION, lifespan=lifespan)
    app.state.settings = settings
    install_error_handlers(app)
    # The last added is the outermost: every answer of the guard has a request id and an access line.
    app.add_middleware(
        RequestGuard,
        keys=ApiKeys(settings.api_key_organizations(), settings.gateway_api_keys_file),
        limiter=RateLimiter(settings.gateway_rate_limit_per_minute),
        max_json_body_bytes=settings.gateway_max_json_body_bytes,
        # the multipart upload streams its body itself, under gateway_max_upload_bytes
        own_body_limit={("POST", files_router.prefix)},
    )
    app.add_middleware(RequestContextMiddleware)
    for router in (
        files_router,
        fine_tuning_router,
        models_router,
        chat_router,
        completions_router,
        webhooks_router,
        evals_router,
    ):
        app.include_router(router, responses=ERROR_RESPONSES)
    app.include_router(health.router)
    app.mount("/metrics", make_asgi_app())
    install_dashboard(app)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


# OpenAPI links: which value of an operation's 200 answer names the object another operation
# takes, so that a client (and schemathesis's stateful phase) can walk from an upload, a job or
# a model to every operation on it. Each row: source, the value in its answer, where that value
# goes (a path parameter, or ``body.<field>`` of a JSON body), and the target operations.
_ON_A_FILE = ("GET /v1/files/{file_id}", "GET /v1/files/{file_id}/content", "DELETE /v1/files/{file_id}")
_ON_A_JOB = (
    "GET /v1/fine_tuning/jobs/{job_id}",
    "GET /v1/fine_tuning/jobs/{job_id}/events",
    "GET /v1/fine_tuning/jobs/{job_id}/checkpoints",
    "POST /v1/fine_tuning/jobs/{job_id}/pause",
    "POST /v1/fine_tuning/jobs/{job_id}/resume",
    "POST /v1/fine_tuning/jobs/{job_id}/cancel",
)
_ON_A_MODEL = ("GET /v1/models/{model}", "DELETE /v1/models/{model}")
_ON_A_WEBHOOK_ENDPOINT = tuple(
    f"{method} /v1/webhook_endpoints/{{webhook_endpoint_id}}{tail}"
    for method, tail in (
        ("GET", ""), ("POST", ""), ("DELETE", ""), ("POST", "/rotate_secret"), ("GET", "/deliveries")
    )
)
_ON_AN_EVAL = tuple(
    f"{method} /v1/evals/{{eval_id}}{tail}"
    for method, tail in (("GET", ""), ("POST", ""), ("DELETE", ""), ("GET", "/runs"), ("POST", "/runs"))
)
_ON_A_RUN = tuple(
    f"{method} /v1/evals/{{eval_id}}/runs/{{run_id}}{tail}"
    for method, tail in (
        ("GET", ""), ("POST", ""), ("DELETE", ""), ("POST", "/cancel"), ("GET", "/output_items")
    )
)
_OUTPUT_ITEMS = "GET /v1/evals/{eval_id}/runs/{run_id}/output_items"
_ON_AN_OUTPUT_ITEM = (_OUTPUT_ITEMS + "/{output_item_id}",)
LINKS: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("POST /v1/files", "$response.body#/id", "file_id", _ON_A_FILE),
    ("POST /v1/files", "$response.body#/id", "body.training_file", ("POST /v1/fine_tuning/jobs",)),
    ("GET /v1/files", "$response.body#/data/0/id", "file_id", _ON_A_FILE),
    ("POST /v1/fine_tuning/jobs", "$response.body#/id", "job_id", _ON_A_JOB),
    ("GET /v1/fine_tuning/jobs", "$response.body#/data/0/id", "job_id", _ON_A_JOB),
    ("GET /v1/models", "$response.body#/data/0/id", "model", _ON_A_MODEL),
    ("POST /v1/webhook_endpoints", "$response.body#/id", "webhook_endpoint_id", _ON_A_WEBHOOK_ENDPOINT),
    ("GET /v1/webhook_endpoints", "$response.body#/data/0/id", "webhook_endpoint_id", _ON_A_WEBHOOK_ENDPOINT),
    ("POST /v1/evals", "$response.body#/id", "eval_id", _ON_AN_EVAL),
    ("GET /v1/evals", "$response.body#/data/0/id", "eval_id", _ON_AN_EVAL),
    ("POST /v1/evals/{eval_id}/runs", "$response.body#/eval_id", "eval_id", _ON_A_RUN),
    ("POST /v1/evals/{eval_id}/runs", "$response.body#/id", "run_id", _ON_A_RUN),
    ("GET /v1/evals/{eval_id}/runs", "$response.body#/data/0/eval_id", "eval_id", _ON_A_RUN),
    ("GET /v1/evals/{eval_id}/runs", "$response.body#/data/0/id", "run_id", _ON_A_RUN),
    (_OUTPUT_ITEMS, "$response.body#/data/0/eval_id", "eval_id", _ON_AN_OUTPUT_ITEM),
    (_OUTPUT_ITEMS, "$response.body#/data/0/run_id", "run_id", _ON_AN_OUTPUT_ITEM),
    (_OUTPUT_ITEMS, "$response.body#/data/0/id", "output_item_id", _ON_AN_OUTPUT_ITEM),
)


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, with :data:`LINKS` on the 200 answers and without FastAPI's default 422
    answers, which this API never gives (it answers 400)."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
        for path_item in schema["paths"].values():
            for operation in path_item.values():
                operation.get("responses", {}).pop("422", None)
        for name in ("HTTPValidationError", "ValidationError"):
            schema.get("components", {}).get("schemas", {}).pop(name, None)
        for source, value, into, targets in LINKS:
            links = _operation(schema, source)["responses"]["200"].setdefault("links", {})
            for target in targets:
                operation_id = _operation(schema, target)["operationId"]
                if into.startswith("body."):
                    link = {"requestBody": {into.removeprefix("body."): value}}
                else:
                    link = {"parameters": {into: value}}
                links[operation_id] = {"operationId": operation_id, **link}
        app.openapi_schema = schema
    return app.openapi_schema


def _operation(schema: dict[str, Any], name: str) -> dict[str, Any]:
    """The operation ``"METHOD /path"`` of an OpenAPI document."""
    method, path = name.split(" ", 1)
    return schema["paths"][path][method.lower()]
