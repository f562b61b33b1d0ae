"""The outermost layer of every HTTP request: request id, access log, metrics, last-resort errors.

A plain ASGI middleware rather than Starlette's ``BaseHTTPMiddleware``, so streamed
responses (SSE, file downloads) pass through chunk by chunk and a client disconnect
still reaches the route's stream.

For each request it
1. takes the caller's ``x-request-id`` when it is a sane token, or makes one, and puts it
   on the response (every response, errors and streams included; the SDK exposes it as
   ``error.request_id``), into the request state and into every log line;
2. turns an exception no handler caught into a 500 envelope (see :mod:`.errors`);
3. writes one structlog access line when the response ends, with method, path, route,
   status, duration and organization (never the API key), and records Prometheus metrics.
   Its level (:func:`access_log_level`) keeps routine reads out of a terminal at the
   default level: a successful GET (a dashboard or ``make demo`` polling a job) and the
   probes are debug, a request that changes something or is refused is info, a 5xx warning.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

import structlog
from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.gateway.errors import internal_error

log = structlog.get_logger("tailor.gateway.access")

REQUEST_ID_HEADER = "x-request-id"
_ACCEPTED_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# Probes and scrapes arrive every few seconds; their access lines go to debug.
_QUIET_PATHS = ("/healthz", "/readyz", "/metrics")
_READS = frozenset({"GET", "HEAD", "OPTIONS"})

HTTP_REQUESTS = Counter(
    "tailor_gateway_http_requests_total",
    "HTTP requests answered, by method, route and status.",
    ["method", "route", "status"],
)
HTTP_DURATION = Histogram(
    "tailor_gateway_http_request_duration_seconds",
    "Time from a request's arrival to the end of its response body, by method and route.",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60, 600),
)


def request_id_from(scope: Scope) -> str:
    """The caller's request id when it is a short safe token (it is echoed and logged), else a new one."""
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            candidate = value.decode("latin-1")
            if _ACCEPTED_REQUEST_ID.match(candidate):
                return candidate
            break
    return f"req_{uuid.uuid4().hex}"


def access_log_level(method: str, path: str, status: int | None) -> int:
    """The level of a request's access line (see the module docstring)."""
    if path.startswith(_QUIET_PATHS):
        return logging.DEBUG
    if status is not None and status >= 500:
        return logging.WARNING
    return logging.DEBUG if method in _READS and status is not None and status < 400 else logging.INFO


class RequestContextMiddleware:
    """Request id, access log, metrics and the last-resort 500; see the module docstring."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(scope)
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        started = time.perf_counter()
        status: int | None = None

        async def send_with_request_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", request_id.encode())]
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_request_id)
            except Exception:
                if status is not None:
                    # the response already started: nothing can be sent but the end of the connection
                    log.exception("unhandled error after the response started")
                    raise
                await internal_error().response()(scope, receive, send_with_request_id)
            finally:
                self._record(scope, status, time.perf_counter() - started)

    @staticmethod
    def _record(scope: Scope, status: int | None, duration_s: float) -> None:
        route = scope.get("route")
        # the route's template keeps the metric's cardinality bounded (not the raw path with ids)
        template = getattr(route, "path", None) or (
            "/metrics" if scope["path"].startswith("/metrics") else "unmatched"
        )
        method = scope["method"]
        # no status: the client left before any response (a cancelled stream)
        status_label = str(status) if status is not None else "disconnected"
        HTTP_REQUESTS.labels(method, template, status_label).inc()
        HTTP_DURATION.labels(method, template).observe(duration_s)
        log.log(
            access_log_level(method, scope["path"], status),
            "request",
            method=method,
            path=scope["path"],
            route=template,
            status=status_label,
            duration_ms=round(duration_s * 1000, 2),
            organization=getattr(scope.get("state", {}).get("caller"), "organization", None),
        )
