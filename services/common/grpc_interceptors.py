"""The server interceptor every Tailor gRPC service runs: call context, errors, access log, metrics.

For each call it
1. authenticates the caller (:mod:`services.common.internal_auth`): every call but
   health checks (which probes make anonymously) carries a token signed by a known
   service identity, or a worker's job token; no or a bad token is UNAUTHENTICATED,
   a caller the policy table does not allow this method (or, for a worker, this job,
   attempt or file) PERMISSION_DENIED, logged with the method, issuer and reason;
2. binds the organization the verified token names (never a header), and the request
   id, for the handler (:mod:`services.common.tenancy`) and for every log line; refuses
   a call that needs an organization without one (UNAUTHENTICATED);
3. maps exceptions to a status, in this one place: a
   :class:`~services.common.errors.TailorError` becomes its status code with a
   ``google.rpc.ErrorInfo`` detail (reason = OpenAI-style code, metadata.param =
   the field at fault); anything else becomes INTERNAL with a generic message,
   and its traceback is logged;
4. writes one access log line (:func:`access_log_level`: an answered call at debug) and
   records Prometheus metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import structlog
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status
from prometheus_client import Counter, Histogram

from services.common.errors import PermissionDenied, TailorError, Unauthenticated
from services.common.internal_auth import policy
from services.common.internal_auth.tokens import InvalidToken, Principal, TokenVerifier
from services.common.tenancy import (
    ORGANIZATION_METADATA_KEY,
    REQUEST_ID_METADATA_KEY,
    call_context,
    validate_organization_id,
)

log = structlog.get_logger("tailor.grpc")

ERROR_DOMAIN = "tailor"
BEARER = "bearer "
# With internal auth disabled (unit tests only): the services (and methods) that answer
# without an organization header.
ANONYMOUS_SERVICE_PREFIXES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.",
    "/tailor.inference.v1.InferenceService/GetReplicaInfo",
)

# Which access lines a person sees at the default level. An answered call is routine (each
# user request fans out into several, and `make up` printed thousands an hour): debug. A
# refusal is the caller's to fix: info. A failure of the service or of what it depends on:
# warning (an unhandled error's traceback is logged on its own, at error).
_ROUTINE_CODES = frozenset({grpc.StatusCode.OK, grpc.StatusCode.CANCELLED})
_FAULT_CODES = frozenset(
    {
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DATA_LOSS,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
    }
)


def access_log_level(code: grpc.StatusCode) -> int:
    """The level of a call's access line, by how it ended (see above)."""
    if code in _ROUTINE_CODES:
        return logging.DEBUG
    return logging.WARNING if code in _FAULT_CODES else logging.INFO


RPC_HANDLED = Counter(
    "tailor_grpc_server_handled_total", "RPCs completed, by method and status code.", ["method", "code"]
)
RPC_DURATION = Histogram(
    "tailor_grpc_server_handling_seconds",
    "Time from a call's start to its end, by method.",
    ["method"],
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120, 600),
)


def status_from_exception(exc: BaseException) -> tuple[grpc.StatusCode, grpc.Status | None]:
    """The status a failure is answered with; the one mapping of errors to gRPC codes.

    Returns the code and, for domain errors, a rich status (message + ErrorInfo) to abort with.
    """
    if isinstance(exc, TailorError):
        info = error_details_pb2.ErrorInfo(
            reason=exc.code, domain=ERROR_DOMAIN, metadata={"param": exc.param} if exc.param else {}
        )
        detail = any_pb2.Any()
        detail.Pack(info)
        status = status_pb2.Status(code=exc.status_code.value[0], message=exc.message, details=[detail])
        return exc.status_code, rpc_status.to_status(status)
    return grpc.StatusCode.INTERNAL, None


class ServerCallInterceptor(grpc.aio.ServerInterceptor):
    """Wraps every RPC handler with authentication, context binding, tenancy, error mapping and access logging.

    ``verifier`` checks the callers' tokens; None means internal auth is disabled (unit
    tests only), and the organization is then read from the ``x-tailor-organization`` header.
    """

    def __init__(self, verifier: TokenVerifier | None = None) -> None:
        self.verifier = verifier

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:  # unknown method: grpc answers UNIMPLEMENTED itself
            return handler
        method = handler_call_details.method
        metadata = {k: v for k, v in handler_call_details.invocation_metadata or () if isinstance(v, str)}
        if self.verifier is None:
            anonymous = method.startswith(ANONYMOUS_SERVICE_PREFIXES)
            organization = metadata.get(ORGANIZATION_METADATA_KEY) or None
            return _wrap_handler(
                handler,
                lambda: _Call(
                    method,
                    metadata,
                    anonymous,
                    organization,
                    needs_organization=not anonymous and policy.needs_organization(method),
                ),
            )
        anonymous = policy.is_anonymous(method)
        principal: Principal | None = None
        refusal: TailorError | None = None
        if not anonymous:
            principal, refusal = self._authenticate(method, metadata.get("authorization", ""))
        return _wrap_handler(
            handler,
            lambda: _Call(
                method,
                metadata,
                anonymous,
                principal.organization if principal else None,
                principal=principal,
                refusal=refusal,
                needs_organization=policy.needs_organization(method),
            ),
        )

    def _authenticate(self, method: str, authorization: str) -> tuple[Principal | None, TailorError | None]:
        assert self.verifier is not None
        if not authorization.lower().startswith(BEARER):
            _log_refusal(method, None, "no bearer token")
            return None, Unauthenticated("internal calls must carry a bearer token", code="unauthenticated")
        try:
            principal = self.verifier.verify(authorization[len(BEARER) :].strip())
        except InvalidToken as error:
            _log_refusal(method, None, str(error))
            return None, Unauthenticated(f"invalid token: {error}", code="invalid_token")
        try:
            policy.authorize(principal, method)
        except policy.Refused as refused:
            _log_refusal(method, principal.issuer, str(refused))
            return principal, PermissionDenied(str(refused), code="permission_denied")
        return principal, None


def _log_refusal(method: str, issuer: str | None, reason: str) -> None:
    # Never the token: the method, who it claimed to be and why it was refused.
    log.warning("internal call refused", method=method, issuer=issuer, reason=reason)


class _Call:
    """One call's context, entered around the handler's whole execution (every streamed item included)."""

    def __init__(
        self,
        method: str,
        metadata: dict[str, str],
        anonymous: bool,
        organization: str | None,
        *,
        principal: Principal | None = None,
        refusal: TailorError | None = None,
        needs_organization: bool | None = None,
    ) -> None:
        self.method = method
        self.anonymous = anonymous
        self.organization = organization
        self.principal = principal
        self.refusal = refusal
        self.needs_organization = not anonymous if needs_organization is None else needs_organization
        self.request_id = metadata.get(REQUEST_ID_METADATA_KEY) or uuid.uuid4().hex

    @contextlib.asynccontextmanager
    async def serving(self, context: grpc.aio.ServicerContext, request: Any = None) -> AsyncIterator[None]:
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        with call_context(self.organization, self.request_id), structlog.contextvars.bound_contextvars(
            request_id=self.request_id, organization=self.organization
        ):
            try:
                if self.refusal is not None:
                    raise self.refusal
                self._check_organization()
                if request is not None and self.principal is not None:
                    self._check_request(request)
                yield
            except grpc.aio.AbortError:
                # the handler aborted deliberately (a protocol-level check); the code is already set
                code = context.code() or grpc.StatusCode.UNKNOWN
                raise
            except (asyncio.CancelledError, GeneratorExit):
                # the client went away or the deadline passed; nobody is left to answer
                code = grpc.StatusCode.CANCELLED
                raise
            except Exception as exc:
                code, status = status_from_exception(exc)
                if status is not None:
                    await context.abort_with_status(status)
                log.exception("unhandled error", method=self.method)
                await context.abort(code, f"internal error (request id {self.request_id})")
            finally:
                self._record(code, time.perf_counter() - started)

    def _check_organization(self) -> None:
        if self.anonymous or not self.needs_organization:
            return
        if self.organization is None:
            raise Unauthenticated(
                "internal calls must act for an organization: none was given",
                code="missing_organization",
            )
        validate_organization_id(self.organization)

    def guard_stream(self, requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
        """A streamed request, each message checked against the caller's rights (a worker's)."""
        if self.principal is None or not self.principal.worker:
            return requests
        principal, method = self.principal, self.method

        async def checked() -> AsyncIterator[Any]:
            async for message in requests:
                try:
                    policy.authorize_stream_message(principal, method, message)
                except policy.Refused as refused:
                    _log_refusal(method, principal.issuer, str(refused))
                    raise PermissionDenied(str(refused), code="permission_denied") from None
                yield message

        return checked()

    def _check_request(self, request: Any) -> None:
        assert self.principal is not None
        try:
            policy.authorize_request(self.principal, self.method, request)
        except policy.Refused as refused:
            _log_refusal(self.method, self.principal.issuer, str(refused))
            raise PermissionDenied(str(refused), code="permission_denied") from None

    def _record(self, code: grpc.StatusCode, duration: float) -> None:
        RPC_HANDLED.labels(self.method, code.name).inc()
        RPC_DURATION.labels(self.method).observe(duration)
        if not self.anonymous:
            log.log(
                access_log_level(code),
                "rpc",
                method=self.method,
                status=code.name,
                duration_ms=round(duration * 1000, 2),
            )


def _wrap_handler(handler: grpc.RpcMethodHandler, new_call: Callable[[], _Call]) -> grpc.RpcMethodHandler:
    """Returns a handler of the same arity whose behaviour runs inside a fresh :class:`_Call`."""
    if handler.response_streaming:
        inner_stream = handler.unary_stream or handler.stream_stream

        async def streaming(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            call = new_call()
            async with call.serving(context, None if handler.request_streaming else request):
                if handler.request_streaming:
                    request = call.guard_stream(request)
                async for item in inner_stream(request, context):
                    yield item

        factory = (
            grpc.stream_stream_rpc_method_handler
            if handler.request_streaming
            else grpc.unary_stream_rpc_method_handler
        )
        return factory(streaming, handler.request_deserializer, handler.response_serializer)

    inner_unary = handler.unary_unary or handler.stream_unary

    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        call = new_call()
        async with call.serving(context, None if handler.request_streaming else request):
            if handler.request_streaming:
                request = call.guard_stream(request)
            return await inner_unary(request, context)

    factory = (
        grpc.stream_unary_rpc_method_handler if handler.request_streaming else grpc.unary_unary_rpc_method_handler
    )
    return factory(unary, handler.request_deserializer, handler.response_serializer)
