"""Idempotent job creation: when a request repeating an idempotency key gets the earlier job.

A request carrying the idempotency key of an earlier one in the same organization gets
that job instead of starting another, provided it asks for the same thing; a different
request under the same key is refused. How long a key holds depends on who chose it:

- A client's key (``Idempotency-Key``) names one operation, so it returns its job
  whatever the job's status: a retry arriving after the job was cancelled or failed
  is still that same request, and must not start a second training run.
- A key the gateway derived from the body (``idempotency_key_derived``) is only a
  guess that an identical body is a retry. It returns the earlier job while that job
  has not ended (validating_files, queued, running, paused); once it has, an identical
  request is a deliberate new run (say, after cancelling), so it creates a new job.
  The ended job gives its key up in the transaction that stores the new one
  (:func:`release_ended_jobs_key`), so the uniqueness of (organization, key) in the
  records still makes two concurrent identical creates one job.
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.database import first_or_none
from services.common.errors import InvalidArgument
from services.trainer.records import JobRecord, Status
from tailor.trainer.v1 import trainer_service_pb2


async def job_answering(
    session: AsyncSession, organization: str, request: trainer_service_pb2.CreateJobRequest, fingerprint: str
) -> JobRecord | None:
    """The earlier job that answers ``request`` instead of a new one, or None to create one."""
    earlier = await job_with_key(session, organization, request.idempotency_key, fingerprint)
    if earlier is not None and request.idempotency_key_derived and earlier.status in Status.FINISHED:
        return None
    return earlier


async def release_ended_jobs_key(
    session: AsyncSession, organization: str, request: trainer_service_pb2.CreateJobRequest
) -> None:
    """For a derived key: the ended job holding it gives it up, so that the new job can be stored under it."""
    if not request.idempotency_key_derived:
        return
    await session.execute(
        update(JobRecord)
        .where(
            JobRecord.organization_id == organization,
            JobRecord.idempotency_key == request.idempotency_key,
            JobRecord.status.in_(Status.FINISHED),
        )
        .values(idempotency_key=None)
        .execution_options(synchronize_session=False)
    )


async def job_with_key(
    session: AsyncSession, organization: str, key: str, fingerprint: str
) -> JobRecord | None:
    """The job created earlier under this idempotency key; a different request under it is refused."""
    query = select(JobRecord).where(
        JobRecord.organization_id == organization, JobRecord.idempotency_key == key
    )
    earlier = await first_or_none(session, query)
    if earlier is not None and earlier.request_fingerprint != fingerprint:
        raise InvalidArgument(
            "This idempotency key was already used for a different fine-tuning job request.",
            param="idempotency_key",
            code="idempotency_key_reused",
        )
    return earlier
