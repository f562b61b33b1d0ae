"""The one place where failures become OpenAI's error envelope and HTTP status.

Every non-2xx answer of the gateway is ``{"error": {"message", "type", "param", "code"}}``
(docs/research/openai_api.md §3): the official SDK picks its exception class from the status alone and
reads ``message``/``code``/``param`` from that body, so a framework default such as
FastAPI's ``422 {"detail": ...}`` would surface as the wrong exception with no message.

Where failures come from, and what they become:

* :class:`OpenAIError`, raised by the gateway's own checks: as constructed.
* :class:`TemporarilyUnavailable`, raised by the gateway itself when it knows what is
  missing and when to look again (no inference replica serves a base model yet): 503
  with its own message, which names nothing internal, and ``Retry-After``.
* A failed internal gRPC call (:class:`grpc.aio.AioRpcError`): its status through
  :data:`HTTP_STATUS_OF_GRPC`, with the ``code`` and ``param`` the service attached; a
  domain error raised in the gateway process itself (``TailorError``) the same way.
  A dependency that is down (UNAVAILABLE, a call cut off) is 503 with ``Retry-After``.
* FastAPI's request validation: 400 ``invalid_request_error`` naming the field.
* Starlette's HTTP exceptions (unknown route, wrong method): the envelope with their status.
* Anything else: 500 ``server_error`` with a generic message, the traceback logged
  (:func:`internal_error`, used by the request middleware and mid-stream).

Two rules follow from the SDK retrying 408, 409, 429 and every 5xx twice: 409 is never
used, and deterministic failures are 4xx. Retryable statuses are kept for what a retry
can fix (an upstream that is down or slow), and 501 says ``x-should-retry: false``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

import grpc
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from services.common.errors import TailorError, Unavailable, shown
from services.common.grpc_client import rpc_error

log = structlog.get_logger("tailor.gateway.errors")

INVALID_REQUEST = "invalid_request_error"
SERVER_ERROR = "server_error"

# gRPC status -> HTTP status. Why each:
# - RESOURCE_EXHAUSTED is 400, not 429 or 413: the services raise it for configured limits
#   (file size, counts) that fail again on every retry, and OpenAI answers an oversize file
#   with 400. 429 is kept for the gateway's own per-key rate limit, where waiting helps.
# - ALREADY_EXISTS is 400 rather than 409, which the SDK would retry.
# - UNAVAILABLE (503) and DEADLINE_EXCEEDED (504) are transient: the SDK's retry is right.
HTTP_STATUS_OF_GRPC: Mapping[grpc.StatusCode, int] = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.ALREADY_EXISTS: 400,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.CANCELLED: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}

# How long a caller is told to wait before retrying a 503 (a dependency down or restarting:
# `make up` restarts a crashed service within seconds). The SDK honours Retry-After up to
# 60 s. A 504 carries none: its deadline was already spent waiting, and the SDK's own
# backoff fits a dependency that is slow better than a fixed pause would.
RETRY_AFTER_S = 2

# What the caller is told for a 5xx: upstream details (addresses, internals) stay in the log.
_SERVER_MESSAGES: Mapping[int, str] = {
    500: "The server had an error while processing your request.",
    501: "This operation is not available on this deployment.",
    503: "A service Tailor depends on is unavailable right now; retry shortly.",
    504: "A service Tailor depends on did not answer in time; retry shortly.",
}


class OpenAIError(Exception):
    """A failure the caller is told about, with OpenAI's status, type, code and param."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = INVALID_REQUEST,
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        """The envelope, as sent in a JSON response or a mid-stream SSE event."""
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


class TemporarilyUnavailable(Unavailable):
    """Something the request needs is missing right now, and may be back in ``retry_after_s``.

    Raised in the gateway process; answered 503 with this message and ``Retry-After`` (the
    SDK waits that long before its retries).
    """

    def __init__(self, message: str, *, retry_after_s: int, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after_s = retry_after_s

    def openai_error(self) -> OpenAIError:
        return OpenAIError(
            503,
            self.message,
            type=SERVER_ERROR,
            code=self.code,
            headers={"Retry-After": str(self.retry_after_s)},
        )


def invalid_request(message: str, *, param: str | None = None, code: str | None = None) -> OpenAIError:
    """400 ``invalid_request_error``: the request itself is wrong."""
    return OpenAIError(400, message, param=param, code=code)


def unsupported_parameter(param: str, why: str) -> OpenAIError:
    """400 for a parameter Tailor cannot honour, where silently ignoring it would mislead."""
    return OpenAIError(
        400, f"Unsupported parameter: '{param}': {why}", param=param, code="unsupported_parameter"
    )


def from_status(status: grpc.StatusCode, message: str, code: str | None, param: str | None) -> OpenAIError:
    """The OpenAI error for a gRPC status with its message, code and param: the one mapping."""
    http_status = HTTP_STATUS_OF_GRPC.get(status, 500)
    if http_status >= 500:
        log.warning("upstream failure", grpc_status=status.name, details=message, http_status=http_status)
        headers = None
        if http_status == 501:
            headers = {"x-should-retry": "false"}
        elif http_status == 503:
            headers = {"Retry-After": str(RETRY_AFTER_S)}
        return OpenAIError(
            http_status, _SERVER_MESSAGES[http_status], type=SERVER_ERROR, code=code, headers=headers
        )
    return OpenAIError(http_status, message or HTTPStatus(http_status).phrase, param=param, code=code)


def from_rpc_error(error: grpc.aio.AioRpcError) -> OpenAIError:
    """The OpenAI error for a failed internal call."""
    decoded = rpc_error(error)
    return from_status(decoded.status, decoded.message, decoded.code, decoded.param)


def internal_error() -> OpenAIError:
    """500 for the exception being handled: the caller learns nothing of it, the log gets the traceback."""
    log.exception("unhandled error")
    return OpenAIError(500, _SERVER_MESSAGES[500], type=SERVER_ERROR)


def _param_of(location: Sequence[Any]) -> str | None:
    """``("body", "messages", 0, "role")`` -> ``messages[0].role``; ``("query", "limit")`` -> ``limit``.

    A name the client made up (an unknown field, a ``metadata`` key) is cut as errors quote values.
    """
    param = ""
    for part in location[1:]:
        if isinstance(part, int):
            param += f"[{part}]"
        else:
            param += f".{shown(str(part))}" if param else shown(str(part))
    return param or None


def from_validation_error(error: RequestValidationError) -> OpenAIError:
    """400 naming the first offending field, in OpenAI's words where it has some."""
    problem = error.errors()[0]
    location = tuple(problem.get("loc", ()))
    kind = problem.get("type", "")
    param = _param_of(location)
    if param is None:  # the body as a whole: not JSON, absent, or not an object
        return invalid_request(
            "We could not parse the JSON body of your request. Send a JSON object with "
            "`Content-Type: application/json`."
        )
    if kind == "missing":
        return invalid_request(
            f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter"
        )
    if kind == "extra_forbidden":
        return invalid_request(
            f"Unrecognized request argument supplied: {param}", param=param, code="unknown_parameter"
        )
    return invalid_request(
        f"Invalid value for '{param}': {problem.get('msg', 'invalid')}.", param=param, code="invalid_value"
    )


_HTTP_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def allowed_methods(request: Request) -> list[str]:
    """Every method some route of the app serves at the request's path, for a 405's ``Allow``."""
    return [
        method
        for method in _HTTP_METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL
            for route in request.app.routes
        )
    ]


def install_error_handlers(app: FastAPI) -> None:
    """Makes every failure path of ``app`` answer with the envelope."""

    async def openai_error(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, OpenAIError)
        return error.response()

    async def upstream_error(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, grpc.aio.AioRpcError)
        return from_rpc_error(error).response()

    async def local_error(_: Request, error: Exception) -> JSONResponse:
        # a domain error raised in the gateway itself (shared code such as the router)
        assert isinstance(error, TailorError)
        if isinstance(error, TemporarilyUnavailable):
            return error.openai_error().response()
        return from_status(error.status_code, error.message, error.code, error.param).response()

    async def validation_error(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        return from_validation_error(error).response()

    async def http_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, StarletteHTTPException)
        headers = dict(error.headers or {})
        if error.status_code == 404:
            message = f"Invalid URL ({request.method} {shown(request.url.path)})"
        elif error.status_code == 405:
            message = f"Method not allowed ({request.method} {shown(request.url.path)})"
            # Starlette names the methods of the first route it matched; a path's are spread over several
            headers["Allow"] = ", ".join(allowed_methods(request))
        else:
            message = str(error.detail)
        kind = SERVER_ERROR if error.status_code >= 500 else INVALID_REQUEST
        return OpenAIError(error.status_code, message, type=kind, headers=headers).response()

    app.add_exception_handler(OpenAIError, openai_error)
    app.add_exception_handler(grpc.aio.AioRpcError, upstream_error)
    app.add_exception_handler(TailorError, local_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
