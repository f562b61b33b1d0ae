"""How a job moves between statuses when an attempt ends badly or the job goes back in the queue.

::

    validating_files -> queued -> running -> succeeded | failed | cancelled
                          ^  |       |
                          |  +-> paused (pause; resume puts it back in the queue)
                          +----------+ (a worker crashed or vanished, retries left;
                                        a trainer restart)

These transitions are shared by the RPCs (cancel, pause, resume, worker reports) and
the scheduler (crashes, lost heartbeats, restarts); each runs inside the caller's
write transaction.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.trainer.events import ERROR, WARN, add_event
from services.trainer.records import JobRecord, Status, latest_checkpoint, now


def clear_progress(job: JobRecord) -> None:
    """Forgets the current attempt's pace: a new attempt measures its own."""
    job.estimated_finish = None
    job.pace_start_step = None
    job.pace_start_time = None


def requeue(job: JobRecord) -> None:
    """Back in the queue for a fresh attempt; the current attempt's reports are refused from now on."""
    job.status = Status.QUEUED
    job.attempt_id = None
    clear_progress(job)


def mark_failed(session: AsyncSession, job: JobRecord, *, code: str, message: str, param: str = "") -> None:
    """Ends the job as failed, with OpenAI's ``error`` and an error-level event."""
    job.status = Status.FAILED
    job.error_code, job.error_message, job.error_param = code, message, param
    job.finished_at = now()
    clear_progress(job)
    add_event(session, job, message, level=ERROR)


async def resume_point(session: AsyncSession, job: JobRecord) -> str:
    """Where a new attempt continues from, in words: "the checkpoint at step N" or "the start"."""
    checkpoint = await latest_checkpoint(session, job.id)
    return f"the checkpoint at step {checkpoint.step_number}" if checkpoint else "the start"


async def end_attempt_badly(
    session: AsyncSession,
    job: JobRecord,
    *,
    code: str,
    message: str,
    param: str = "",
    retryable: bool,
    retries: int,
) -> None:
    """The attempt ended without a result: retry from the last checkpoint while retries last, else fail."""
    if retryable and job.worker_failures < retries:
        job.worker_failures += 1
        requeue(job)
        add_event(session, job, f"{message} Retrying from {await resume_point(session, job)}.", level=WARN)
    else:
        mark_failed(session, job, code=code, message=message, param=param)
