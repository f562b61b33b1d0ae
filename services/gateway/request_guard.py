"""The API's front door: key, rate and body size are checked before the app reads a request.

FastAPI reads and parses a request's whole body before it runs the route's dependencies,
so a key checked there comes too late: 8 concurrent 50 MB chat bodies with a wrong key
once took the gateway from 81 to 564 MiB, and with a right key to 1.5 GiB, the oversize
body then failing at the gRPC message limit. This plain ASGI layer (not Starlette's
``BaseHTTPMiddleware``, so streams still pass through chunk by chunk) answers first, for
every path under ``/v1``; health, readiness, metrics and the OpenAPI document are not
guarded. In order:

1. the API key (:func:`.auth.identify`): 401 without a valid one;
2. the key's rate (:class:`.auth.RateLimiter`): 429 with ``Retry-After`` when over;
3. the body: a ``Content-Length`` over ``gateway_max_json_body_bytes`` is 413 at once; a
   body without one (chunked) is counted as the app reads it, and at the first byte past
   the limit the client gets 413 and the app a disconnect, so no more than the limit is
   ever held. Routes that stream their body under a limit of their own (the multipart file
   upload, under ``gateway_max_upload_bytes``) are left to it.

What it found goes into the request's state: the :class:`.auth.Caller` the routes' auth
dependency returns, and the organization the access log names. Every answer past the key
check, the app's own and streams included, carries the key's ``x-ratelimit-*-requests``
headers (none when the limit is disabled: there is nothing to count down).

FastAPI's own ``max_body_size`` is not used: where a route answers without reading the
body it sends a plain-text 413 rather than OpenAI's envelope, and it checks the key after
the body, as above.
"""

from __future__ import annotations

from collections.abc import Collection

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.gateway.auth import ApiKeys, Caller, Quota, RateLimiter, identify, rate_limited
from services.gateway.errors import OpenAIError

API_PREFIX = "/v1"


def body_too_large(limit: int) -> OpenAIError:
    """413 for a body over the JSON limit; the SDK does not retry it."""
    return OpenAIError(
        413,
        f"The request body is larger than the maximum of {limit} bytes for this endpoint.",
        code="request_too_large",
    )


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


def _with_quota_headers(send: Send, quota: Quota | None) -> Send:
    """``send`` adding the key's ``x-ratelimit-*`` headers to the response's start."""
    if quota is None:
        return send

    async def send_with_quota(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", ()), *quota.headers()]
        await send(message)

    return send_with_quota


class BodyLimit:
    """One request's body, counted as the app reads it; past ``limit``, 413 and a disconnect."""

    def __init__(self, limit: int, scope: Scope, receive: Receive, send: Send) -> None:
        self.limit = limit
        self.exceeded = False
        self._scope = scope
        self._receive = receive
        self._send = send
        self._received = 0
        self._started = False

    async def receive(self) -> Message:
        if self.exceeded:
            return {"type": "http.disconnect"}
        message = await self._receive()
        if message["type"] == "http.request":
            self._received += len(message.get("body", b""))
            if self._received > self.limit:
                # The chunk that crossed the limit is dropped with the rest: the app sees a client
                # that left, and whatever it answers to that is not sent (see `send`).
                self.exceeded = True
                if not self._started:
                    await body_too_large(self.limit).response()(self._scope, self._receive, self._send)
                return {"type": "http.disconnect"}
        return message

    async def send(self, message: Message) -> None:
        if self.exceeded:
            return  # the 413 was the answer
        if message["type"] == "http.response.start":
            self._started = True
        await self._send(message)


class RequestGuard:
    """Key, rate limit and JSON body limit in front of the API; see the module docstring."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        keys: ApiKeys,
        limiter: RateLimiter,
        max_json_body_bytes: int,
        own_body_limit: Collection[tuple[str, str]] = (),
    ) -> None:
        """``own_body_limit``: the (method, path) of routes that limit their streamed body themselves."""
        self.app = app
        self.keys = keys
        self.limiter = limiter
        self.max_json_body_bytes = max_json_body_bytes
        self.own_body_limit = frozenset(own_body_limit)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not (path == API_PREFIX or path.startswith(API_PREFIX + "/")):
            await self.app(scope, receive, send)
            return
        try:
            organization, digest = identify(self.keys, _header(scope, b"authorization"))
        except OpenAIError as unauthenticated:
            await unauthenticated.response()(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        state["caller"] = Caller(organization=organization, request_id=state.get("request_id", ""))
        quota = self.limiter.acquire(digest)
        send = _with_quota_headers(send, quota)
        with structlog.contextvars.bound_contextvars(organization=organization):
            if quota is not None and quota.retry_after_s > 0:
                await rate_limited(quota).response()(scope, receive, send)
                return
            if (scope["method"], path) in self.own_body_limit:
                await self.app(scope, receive, send)
                return
            announced = _header(scope, b"content-length")
            if announced is not None and announced.isdigit() and int(announced) > self.max_json_body_bytes:
                await body_too_large(self.max_json_body_bytes).response()(scope, receive, send)
                return
            body = BodyLimit(self.max_json_body_bytes, scope, receive, send)
            try:
                await self.app(scope, body.receive, body.send)
            except Exception:
                if not body.exceeded:
                    raise
                # the app failed on the disconnect it was handed after the 413, which was the answer
