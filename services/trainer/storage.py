"""Where a job's outputs live in the object store, and how they are cleaned up.

A worker writes everything of a job under ``orgs/{org}/jobs/{job_id}/`` (its
checkpoints, full training states and final adapter). Locations a worker reports are
object key prefixes; the trainer keeps them with a trailing ``/`` so that
``.../step-3/`` can never also match ``.../step-30/``, and refuses any outside the
job's own prefix.
"""

from __future__ import annotations

from collections.abc import Iterable

import structlog

from services.common.errors import InvalidArgument, TailorError
from services.common.object_store import ObjectStore
from services.common.object_store.base import is_valid_key

log = structlog.get_logger("tailor.trainer.storage")


def output_prefix(organization_id: str, job_id: str) -> str:
    """The prefix under which a job's worker writes: ``orgs/{org}/jobs/{job_id}/``."""
    return f"orgs/{organization_id}/jobs/{job_id}/"


def job_output(location: str, prefix: str, param: str) -> str:
    """``location`` as a prefix ending in '/', if it lies strictly inside ``prefix``; else INVALID_ARGUMENT."""
    normalized = location if location.endswith("/") else location + "/"
    if not normalized.startswith(prefix) or normalized == prefix or not is_valid_key(normalized.rstrip("/")):
        raise InvalidArgument(
            f"{param} must be an object prefix under {prefix}, got {location!r}", param=param
        )
    return normalized


async def delete_prefixes(store: ObjectStore, prefixes: Iterable[str]) -> None:
    """Deletes every object under each prefix; failures are logged, not raised (the records are what count)."""
    for prefix in prefixes:
        try:
            await store.delete_prefix(prefix)
        except TailorError as error:
            log.warning("could not delete objects", prefix=prefix, error=error.message)


async def discard_unregistered_outputs(store: ObjectStore, prefix: str, kept: Iterable[str]) -> None:
    """Deletes the objects under a job's prefix that no kept checkpoint refers to.

    Runs once a cancelled or failed job's worker is gone, so that what it wrote after its
    last registered checkpoint (a half-uploaded adapter, say) does not linger.
    """
    kept = tuple(kept)
    try:
        stale = [stored.key async for stored in store.list(prefix) if not stored.key.startswith(kept)]
        for key in stale:
            await store.delete(key)
    except TailorError as error:
        log.warning("could not discard a job's unregistered outputs", prefix=prefix, error=error.message)
