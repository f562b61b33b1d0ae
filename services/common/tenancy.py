"""The organization and request id of the call being served.

The gateway maps an API key to an organization; every internal call names it in the
caller's signed token (``org`` claim, :mod:`services.common.internal_auth`), and the
server binds the organization of the verified token only. The ``x-tailor-organization``
metadata entry is read only where internal auth is disabled (unit tests). Internal
services refuse calls that need an organization without one. Inside a call the id is
held in a context variable, so service logic asks :func:`current_organization` instead
of threading it through every signature, and outgoing calls (see
:mod:`services.common.grpc_client`) sign it into their own tokens automatically.
"""

from __future__ import annotations

import contextlib
import contextvars
import re
from collections.abc import Iterator

from services.common.errors import InvalidArgument, Unauthenticated

ORGANIZATION_METADATA_KEY = "x-tailor-organization"
REQUEST_ID_METADATA_KEY = "x-request-id"

# Organization ids become part of object keys and model names, so they are kept to a safe alphabet.
_ORGANIZATION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")

_organization: contextvars.ContextVar[str | None] = contextvars.ContextVar("organization", default=None)
_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)


def validate_organization_id(organization_id: str) -> str:
    if not _ORGANIZATION_ID.match(organization_id):
        raise InvalidArgument(
            f"invalid organization id {organization_id!r}: 1-64 characters of letters, digits, '_' or '-'",
            param="organization",
        )
    return organization_id


def current_organization() -> str:
    """The organization of the call being served; UNAUTHENTICATED outside one."""
    organization = _organization.get()
    if organization is None:
        raise Unauthenticated(
            "no organization: internal calls must act for one (their token's org claim)",
            code="missing_organization",
        )
    return organization


def current_organization_or_none() -> str | None:
    """The organization of the call being served, or None outside one (for forwarding)."""
    return _organization.get()


def current_request_id() -> str | None:
    return _request_id.get()


@contextlib.contextmanager
def call_context(organization: str | None, request_id: str | None) -> Iterator[None]:
    """Binds the organization and request id for the duration of a call (or a background task)."""
    org_token = _organization.set(organization)
    rid_token = _request_id.set(request_id)
    try:
        yield
    finally:
        _organization.reset(org_token)
        _request_id.reset(rid_token)
