"""The job state machine: every status a job can be in, every action that moves it, in one table.

::

    validating_files --files_validated--> queued --claim--> running --succeed--> succeeded
         |                                 ^  |               |  ^
         |                                 |  +----pause----+ |  |
         |                                 |                v v  |
         |                                 +--resume------ paused
         |                                 +--retry-------- (queued, running: a worker
         |                                                   crashed, vanished or the
         |                                                   trainer restarted)
         +---- fail / cancel (from every status not yet finished) ---> failed | cancelled

:data:`TRANSITIONS` is the whole truth: ``(status, action) -> new status``. Every status
change of a job goes through :func:`apply`, inside the caller's write transaction; it
refuses a pair the table does not hold with the error the API shows for that action, and
does what each transition implies (the event users read, the attempt that stops counting,
the finish time, the error). Callers (the RPCs in :mod:`services.trainer.jobs` and
:mod:`services.trainer.worker_api`, the :mod:`services.trainer.scheduler`) decide *when*
an action happens; this module decides *whether* it may and *what* it changes.

A worker's attempt is separate from the status: ``attempt_id`` names the worker whose
reports are accepted. Actions that end an attempt (retry, resume, and every finished
status) make any later report of the old attempt stale.
"""

from __future__ import annotations

import enum

from sqlalchemy.ext.asyncio import AsyncSession

from services.common.errors import FailedPrecondition
from services.trainer.events import ERROR, INFO, WARN, add_event
from services.trainer.records import JobRecord, Status, latest_checkpoint, now


class Action(enum.StrEnum):
    """What can happen to a job."""

    FILES_VALIDATED = "files_validated"  # the scheduler found its files processed
    CLAIM = "claim"  # a worker took it up
    SUCCEED = "succeed"  # its worker reported the fine-tuned model
    FAIL = "fail"  # bad files, no base model, a failure that is not retried
    RETRY = "retry"  # its attempt ended without a result; back in the queue
    CANCEL = "cancel"  # the user cancelled it
    PAUSE = "pause"  # the user paused it
    RESUME = "resume"  # the user resumed it


_UNFINISHED = (Status.VALIDATING_FILES, Status.QUEUED, Status.RUNNING, Status.PAUSED)

TRANSITIONS: dict[tuple[str, Action], str] = {
    (Status.VALIDATING_FILES, Action.FILES_VALIDATED): Status.QUEUED,
    (Status.QUEUED, Action.CLAIM): Status.RUNNING,
    # A repeated claim (the worker's first answer was lost) changes nothing.
    (Status.RUNNING, Action.CLAIM): Status.RUNNING,
    (Status.RUNNING, Action.SUCCEED): Status.SUCCEEDED,
    # A worker told to pause may finish first: its result is kept.
    (Status.PAUSED, Action.SUCCEED): Status.SUCCEEDED,
    (Status.QUEUED, Action.RETRY): Status.QUEUED,
    (Status.RUNNING, Action.RETRY): Status.QUEUED,
    (Status.QUEUED, Action.PAUSE): Status.PAUSED,
    (Status.RUNNING, Action.PAUSE): Status.PAUSED,
    (Status.PAUSED, Action.RESUME): Status.QUEUED,
    **{(status, Action.FAIL): Status.FAILED for status in _UNFINISHED},
    **{(status, Action.CANCEL): Status.CANCELLED for status in _UNFINISHED},
}


def allowed(status: str, action: Action) -> bool:
    """Whether ``action`` may happen to a job in ``status``."""
    return (status, action) in TRANSITIONS


def status_word(status: str) -> str:
    """The status as the API spells it: ``running``, ``validating_files``."""
    return status.removeprefix("JOB_STATUS_").lower()


def refusal(job: JobRecord, action: Action) -> FailedPrecondition:
    """The error for an action the job's status does not allow, worded for whoever attempted it."""
    word = status_word(job.status)
    if action is Action.CANCEL:
        verb = {Status.SUCCEEDED: "succeeded", Status.FAILED: "failed", Status.CANCELLED: "been cancelled"}
        return FailedPrecondition(
            f"The job {job.id} has already {verb[job.status]} and cannot be cancelled.",
            param="job_id",
            code="job_already_finished",
        )
    if action is Action.PAUSE:
        return FailedPrecondition(
            f"Only queued or running jobs can be paused; the job {job.id} is {word}.",
            param="job_id",
            code="job_not_pausable",
        )
    if action is Action.RESUME:
        return FailedPrecondition(
            f"Only paused jobs can be resumed; the job {job.id} is {word}.", param="job_id", code="job_not_paused"
        )
    # The worker's actions: a report for a job that is not (or no longer) its to train.
    hint = "claim it first" if job.status == Status.QUEUED else "stop"
    return FailedPrecondition(f"The job {job.id} is {word}; {hint}.", param="job_id", code=f"job_{word}")


def apply(
    session: AsyncSession,
    job: JobRecord,
    action: Action,
    *,
    event: str | None = None,
    event_level: str = INFO,
    error_code: str = "",
    error_message: str = "",
    error_param: str = "",
) -> None:
    """Moves ``job`` by ``action`` in the caller's transaction, or raises :func:`refusal`.

    ``event`` is the message users read in the job's events (FAIL writes its
    ``error_message`` as an error event when no ``event`` is given).
    """
    target = TRANSITIONS.get((job.status, action))
    if target is None:
        raise refusal(job, action)
    job.status = target
    if action in (Action.RETRY, Action.RESUME):
        # A new attempt will be launched: the old one's reports are refused from now on.
        job.attempt_id = None
    if action is Action.FAIL:
        job.error_code, job.error_message, job.error_param = error_code, error_message, error_param
        event, event_level = event or error_message, ERROR
    if target in Status.FINISHED:
        job.finished_at = now()
    if action is not Action.CLAIM:
        # A new attempt, a pause or an end: the pace measured so far no longer predicts anything.
        clear_progress(job)
    if event:
        add_event(session, job, event, level=event_level)


def clear_progress(job: JobRecord) -> None:
    """Forgets the current attempt's pace: a new attempt measures its own."""
    job.estimated_finish = None
    job.pace_start_step = None
    job.pace_start_time = None


def mark_failed(session: AsyncSession, job: JobRecord, *, code: str, message: str, param: str = "") -> None:
    """Ends the job as failed, with OpenAI's ``error`` and an error-level event."""
    apply(session, job, Action.FAIL, error_code=code, error_message=message, error_param=param)


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
        where = await resume_point(session, job)
        apply(session, job, Action.RETRY, event=f"{message} Retrying from {where}.", event_level=WARN)
    else:
        mark_failed(session, job, code=code, message=message, param=param)
