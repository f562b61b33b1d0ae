"""Domain errors, raised by service logic and mapped to a gRPC status in exactly one place.

Service code never calls ``context.abort`` for business failures: it raises one of
these, and :mod:`services.common.grpc_interceptors` turns it into a status with a
``google.rpc.ErrorInfo`` detail carrying ``code`` (OpenAI's error code, such as
``model_not_found``) and ``param`` (the offending field). The gateway maps that status
to OpenAI's error envelope in one place of its own.
"""

from __future__ import annotations

import grpc


# A caller's value quoted back in an error is cut to this many characters: an error must not
# echo a megabyte, and gRPC turns a status whose details are too large into an INTERNAL one.
MAX_SHOWN_CHARS = 100


def shown(value: str) -> str:
    """``value`` as an error may quote it: cut to :data:`MAX_SHOWN_CHARS` with an ellipsis when longer."""
    return value if len(value) <= MAX_SHOWN_CHARS else value[: MAX_SHOWN_CHARS - 3] + "..."


class TailorError(Exception):
    """Base of all expected failures. ``message`` is safe to show to the caller."""

    status_code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    default_code: str = "server_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code or self.default_code


class InvalidArgument(TailorError):
    """The request itself is wrong: a field is missing, malformed or out of range."""

    status_code = grpc.StatusCode.INVALID_ARGUMENT
    default_code = "invalid_value"


class NotFound(TailorError):
    """The object does not exist, or belongs to another organization (the same answer)."""

    status_code = grpc.StatusCode.NOT_FOUND
    default_code = "not_found"


class AlreadyExists(TailorError):
    status_code = grpc.StatusCode.ALREADY_EXISTS
    default_code = "already_exists"


class FailedPrecondition(TailorError):
    """The request is well-formed but the object is in the wrong state for it."""

    status_code = grpc.StatusCode.FAILED_PRECONDITION
    default_code = "invalid_state"


class Unauthenticated(TailorError):
    status_code = grpc.StatusCode.UNAUTHENTICATED
    default_code = "invalid_api_key"


class PermissionDenied(TailorError):
    status_code = grpc.StatusCode.PERMISSION_DENIED
    default_code = "permission_denied"


class ResourceExhausted(TailorError):
    """A configured limit was hit (file size, queue length, rate)."""

    status_code = grpc.StatusCode.RESOURCE_EXHAUSTED
    default_code = "limit_exceeded"


class Unavailable(TailorError):
    """A dependency (object store, database, another service) cannot be reached right now."""

    status_code = grpc.StatusCode.UNAVAILABLE
    default_code = "service_unavailable"


class Cancelled(TailorError):
    status_code = grpc.StatusCode.CANCELLED
    default_code = "cancelled"


class DeadlineExceeded(TailorError):
    status_code = grpc.StatusCode.DEADLINE_EXCEEDED
    default_code = "timeout"
