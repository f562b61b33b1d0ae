"""Client side of internal gRPC: channels with deadlines, retries and the call's context.

:func:`open_channel` gives a ``grpc.aio`` channel whose every call
- carries a deadline: the caller's ``timeout=``, or ``settings.rpc_timeout_s``;
- forwards the organization and request id of the call being served (or those bound
  with :func:`services.common.tenancy.call_context`) as metadata;
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
) -> grpc.aio.Channel:
    """An insecure channel to an internal service (inside the cluster, behind NetworkPolicy)."""
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
    return grpc.aio.insecure_channel(
        target, options=options, interceptors=call_context_interceptors(settings.rpc_timeout_s)
    )


def idempotent(*methods: Any) -> list[str]:
    """Full method names (``/pkg.Service/Method``) from descriptors, for ``open_channel``."""
    return [f"/{m.containing_service.full_name}/{m.name}" for m in methods]


class _CallContext:
    """Adds the default deadline and the organization / request id metadata to a call."""

    def __init__(self, default_timeout_s: float) -> None:
        self.default_timeout_s = default_timeout_s

    def _details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        metadata = grpc.aio.Metadata(*(details.metadata or ()))
        organization = current_organization_or_none()
        if organization and ORGANIZATION_METADATA_KEY not in metadata:
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


def call_context_interceptors(default_timeout_s: float) -> list[_CallContext]:
    """Client interceptors giving every call shape a deadline and the call's context."""
    kinds = (_UnaryUnaryCallContext, _UnaryStreamCallContext, _StreamUnaryCallContext, _StreamStreamCallContext)
    return [kind(default_timeout_s) for kind in kinds]


@dataclass(frozen=True)
class RpcError:
    """What a failed internal call said: the status, the message, and Tailor's code and param."""

    status: grpc.StatusCode
    message: str
    code: str | None
    param: str | None


def rpc_error(error: grpc.aio.AioRpcError) -> RpcError:
    """Decodes the rich status a Tailor server attaches to a failure."""
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
