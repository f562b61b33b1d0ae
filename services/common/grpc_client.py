"""Client side of internal gRPC: channels with deadlines, retries and the call's context.

:func:`open_channel` gives a ``grpc.aio`` channel whose every call
- carries a deadline: the caller's ``timeout=``, or ``settings.rpc_timeout_s``;
- is authenticated: ``authorization: Bearer <jwt>``, a token this process signs for the
  target service and the organization of the call being served (or the one bound with
  :func:`services.common.tenancy.call_context`), reused until close to its expiry; a worker
  sends the job-scoped token the trainer gave it instead (``bearer_token``). See
  :mod:`services.common.internal_auth`;
- forwards the request id (and, only where internal auth is disabled, the organization) as metadata;
- is retried on UNAVAILABLE only for the methods named idempotent, through gRPC's
  own retry policy in the service config (never for uploads or creations).

:func:`rpc_error` reads back the code and param a server attached to a failure
(see :mod:`services.common.grpc_interceptors`), for the gateway's one mapping to
OpenAI errors.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from services.common.internal_auth.policy import audience_of_method
from services.common.internal_auth.setup import token_minter
from services.common.internal_auth.tokens import TokenMinter
from services.common.settings import CommonSettings
from services.common.tenancy import (
    ORGANIZATION_METADATA_KEY,
    REQUEST_ID_METADATA_KEY,
    current_organization_or_none,
    current_request_id,
)


def retry_service_config(idempotent_methods: Iterable[str]) -> str:
    """gRPC service config retrying ``/pkg.Service/Method`` names on UNAVAILABLE.

    It sets no per-method "timeout": deadlines come from the client interceptor (in
    grpcio 1.85 a methodConfig timeout next to a retry policy failed every call at once).
    """
    names = []
    for full_method in idempotent_methods:
        service, method = full_method.strip("/").split("/")
        names.append({"service": service, "method": method})
    if not names:
        return json.dumps({})
    return json.dumps(
        {
            "methodConfig": [
                {
                    "name": names,
                    "retryPolicy": {
                        "maxAttempts": 4,
                        "initialBackoff": "0.2s",
                        "maxBackoff": "2s",
                        "backoffMultiplier": 2,
                        "retryableStatusCodes": ["UNAVAILABLE"],
                    },
                }
            ]
        }
    )


def open_channel(
    target: str,
    settings: CommonSettings,
    *,
    idempotent_methods: Iterable[str] = (),
    audience: str | None = None,
    bearer_token: str | None = None,
) -> grpc.aio.Channel:
    """A channel to an internal service whose calls carry this process's token.

    ``audience`` is the target's identity (dataset, trainer, inference); without it each
    call's audience is the identity serving its method (health and reflection calls go
    without a token then). ``bearer_token`` is a fixed token sent instead of minting one
    (a training worker's). Transport is plaintext inside the cluster; the token, not the
    network, says who is calling.
    """
    options = [
        ("grpc.max_receive_message_length", settings.grpc_max_message_bytes),
        ("grpc.max_send_message_length", settings.grpc_max_message_bytes),
        ("grpc.enable_retries", 1),
        ("grpc.service_config", retry_service_config(idempotent_methods)),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        # gRPC's default reconnect backoff grows to 120 s: a peer that was down when the
        # channel first tried (a service still starting, a pod restarting) would stay
        # unreachable long after it is back. Internal peers come back fast; retry often.
        ("grpc.initial_reconnect_backoff_ms", 250),
        ("grpc.max_reconnect_backoff_ms", 2_000),
    ]
    credentials = _Credentials(settings, audience, bearer_token)
    return grpc.aio.insecure_channel(
        target, options=options, interceptors=call_context_interceptors(settings.rpc_timeout_s, credentials)
    )


def idempotent(*methods: Any) -> list[str]:
    """Full method names (``/pkg.Service/Method``) from descriptors, for ``open_channel``."""
    return [f"/{m.containing_service.full_name}/{m.name}" for m in methods]


AUTHORIZATION_METADATA_KEY = "authorization"


class _Credentials:
    """What authenticates a channel's calls: a fixed bearer, a minter, or (auth disabled) the org header."""

    def __init__(self, settings: CommonSettings, audience: str | None, bearer_token: str | None) -> None:
        self.disabled = settings.internal_auth_disabled and not bearer_token
        self.audience = audience
        self.bearer_token = bearer_token
        # Fails here, at the channel's opening, when auth is required and this process has no key.
        self.minter: TokenMinter | None = None if self.disabled or bearer_token else token_minter(settings)

    def authorization(self, method: str, organization: str | None) -> str | None:
        if self.bearer_token:
            return f"Bearer {self.bearer_token}"
        if self.minter is None:
            return None
        audience = self.audience or audience_of_method(method)
        if audience is None:
            return None
        return f"Bearer {self.minter.token(audience, organization)}"


class _CallContext:
    """Adds the default deadline, the token and the request id metadata to a call."""

    def __init__(self, default_timeout_s: float, credentials: _Credentials | None = None) -> None:
        self.default_timeout_s = default_timeout_s
        self.credentials = credentials

    def _details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        metadata = grpc.aio.Metadata(*(details.metadata or ()))
        organization = current_organization_or_none()
        method = details.method.decode() if isinstance(details.method, bytes) else str(details.method)
        if self.credentials is not None and AUTHORIZATION_METADATA_KEY not in metadata:
            authorization = self.credentials.authorization(method, organization)
            if authorization is not None:
                metadata[AUTHORIZATION_METADATA_KEY] = authorization
        if (
            organization
            and ORGANIZATION_METADATA_KEY not in metadata
            and (self.credentials is None or self.credentials.disabled)
        ):
            # Only for servers with internal auth disabled (unit tests): others ignore it.
            metadata[ORGANIZATION_METADATA_KEY] = organization
        request_id = current_request_id()
        if request_id and REQUEST_ID_METADATA_KEY not in metadata:
            metadata[REQUEST_ID_METADATA_KEY] = request_id
        timeout = details.timeout if details.timeout is not None else self.default_timeout_s
        return grpc.aio.ClientCallDetails(
            details.method, timeout, metadata, details.credentials, details.wait_for_ready
        )


# grpc.aio files each interceptor under the first of the four kinds it is an instance of,
# so one class per kind is needed for the context to reach every call shape.
class _UnaryUnaryCallContext(_CallContext, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation, client_call_details, request):  # type: ignore[no-untyped-def]
        return await continuation(self._details(client_call_details), request)


class _UnaryStreamCallContext(_CallContext, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation, client_call_details, request):  # type: ignore[no-untyped-def]
        return await continuation(self._details(client_call_details), request)


class _StreamUnaryCallContext(_CallContext, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(self, continuation, client_call_details, request_iterator):  # type: ignore[no-untyped-def]
        return await continuation(self._details(client_call_details), request_iterator)


class _StreamStreamCallContext(_CallContext, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(self, continuation, client_call_details, request_iterator):  # type: ignore[no-untyped-def]
        return await continuation(self._details(client_call_details), request_iterator)


def call_context_interceptors(
    default_timeout_s: float, credentials: _Credentials | None = None
) -> list[_CallContext]:
    """Client interceptors giving every call shape a deadline, its token and the call's context."""
    kinds = (_UnaryUnaryCallContext, _UnaryStreamCallContext, _StreamUnaryCallContext, _StreamStreamCallContext)
    return [kind(default_timeout_s, credentials) for kind in kinds]


@dataclass(frozen=True)
class RpcError:
    """What a failed internal call said: the status, the message, and Tailor's code and param."""

    status: grpc.StatusCode
    message: str
    code: str | None
    param: str | None


# What grpc.aio's client reports when a message of a client stream could not be sent because
# the stream was closed under it (the server ended the call, or its process died, mid-write):
# it replaces whatever status the call had with INTERNAL and this text
# (grpc/_cython/_cygrpc/aio/call.pyx.pxi, set_internal_error). The peer went away: UNAVAILABLE.
_STREAM_CLOSED_UNDER_WRITE = "Internal error from Core"


def rpc_error(error: grpc.aio.AioRpcError) -> RpcError:
    """Decodes the rich status a Tailor server attaches to a failure.

    A client stream cut under a write is UNAVAILABLE, whatever grpc.aio says (see above).
    """
    if error.code() == grpc.StatusCode.INTERNAL and error.details() == _STREAM_CLOSED_UNDER_WRITE:
        return RpcError(grpc.StatusCode.UNAVAILABLE, _STREAM_CLOSED_UNDER_WRITE, code=None, param=None)
    code = param = None
    status = rpc_status.from_call(_TrailingMetadataCall(error))
    if status is not None:
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info):
                code = info.reason or None
                param = info.metadata.get("param") or None
    return RpcError(status=error.code(), message=error.details() or "", code=code, param=param)


class _TrailingMetadataCall:
    """Adapts an AioRpcError to what ``rpc_status.from_call`` reads (code, details, trailers)."""

    def __init__(self, error: grpc.aio.AioRpcError) -> None:
        self._error = error

    def code(self) -> grpc.StatusCode:
        return self._error.code()

    def details(self) -> str | None:
        return self._error.details()

    def trailing_metadata(self) -> Any:
        return tuple(self._error.trailing_metadata() or ())
