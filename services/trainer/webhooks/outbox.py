"""Writes webhook events into the outbox, inside the caller's transaction.

The event row commits or rolls back with the status change it reports, so no outcome is
announced that did not happen and none that happened goes unannounced, whatever crashes
in between. :mod:`.delivery` fans each event out to the endpoints and sends it.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.common.ids import random_token
from services.trainer.records import JobRecord, Status, WebhookEventRecord, now
from services.trainer.webhooks.events import JOB_CANCELLED, JOB_FAILED, JOB_SUCCEEDED

_JOB_EVENT_OF_STATUS = {
    Status.SUCCEEDED: JOB_SUCCEEDED,
    Status.FAILED: JOB_FAILED,
    Status.CANCELLED: JOB_CANCELLED,
}


def record_event(session: AsyncSession, organization_id: str, event_type: str, object_id: str) -> None:
    """Adds one event to the outbox in ``session``'s transaction."""
    session.add(
        WebhookEventRecord(
            id=f"evt_{random_token(24)}",
            organization_id=organization_id,
            created_at=now(),
            type=event_type,
            object_id=object_id,
            fanned_out=False,
        )
    )


def record_job_outcome(session: AsyncSession, job: JobRecord) -> None:
    """The event of a job that just finished (succeeded, failed or cancelled); nothing otherwise."""
    event_type = _JOB_EVENT_OF_STATUS.get(job.status)
    if event_type is not None:
        record_event(session, job.organization_id, event_type, job.id)
