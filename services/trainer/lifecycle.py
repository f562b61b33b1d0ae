"""The job state machine: every status a job can be in, every action that moves it, in one table.

::

    validating_files --files_validated--> queued --claim--> running --succeed--> succeeded
       |        ^                          ^ ^  |              |  ^
     pause    resume                       | |  +---pause---+  |  |
       v        |                          | |             v   v  |
    paused while validating                | +---resume--- paused
       |                                   |                 ^
       +---------files_validated-----------|-----------------+
             (a check that finished as the pause landed)
                                           |
                                           +--retry-- (queued, running: a worker crashed,
                                                       vanished or the trainer restarted)

    fail / cancel: from every status not yet finished ---> failed | cancelled
    (no fail while paused while validating: nothing runs that could fail, and its files
    are checked again when it resumes)

    A paused job's worker checkpoints and exits; until it is gone the job is *pausing*:

    running --pause--> pausing --worker_left--> paused --resume--> queued
                        |   ^                                        ^
                     resume pause                                    |
                        v   |                                        |
                 resumed while pausing --------worker_left-----------+
                 (shown as queued; the pausing worker keeps the job, so its pause
                  checkpoint counts and no other worker starts until it is gone)

    pausing and resumed while pausing may also succeed (the worker finished first).

A job may be paused from any status not yet finished, and resumes where it was. Users see
one ``paused`` status; the table tells its kinds apart (:func:`state`): a job paused before its
files were validated (:data:`PAUSED_WHILE_VALIDATING`, kept in the record's
``paused_while_validating``) goes back to ``validating_files`` when resumed, one paused
later goes back to ``queued`` (its next worker continues from the last checkpoint). The
scheduler's file check runs outside the write transaction, so its verdict may arrive after
a pause: it is applied through this table like any action, so a pause is never
overwritten. A success is kept (the job stays paused and is queued when resumed), a
failure is not applied (the files are checked again on resume).

:data:`TRANSITIONS` is the whole truth: ``(status, action) -> new status``. Every status
change of a job goes through :func:`apply`, inside the caller's write transaction; it
refuses a pair the table does not hold with the error the API shows for that action, and
does what each transition implies (the event users read, the attempt that stops counting,
the finish time, the error). Callers (the RPCs in :mod:`services.trainer.jobs` and
:mod:`services.trainer.worker_api`, the :mod:`services.trainer.scheduler`) decide *when*
an action happens; this module decides *whether* it may and *what* it changes.

A worker's attempt is separate from the status: ``attempt_id`` names the worker whose
reports are accepted. Actions that end an attempt (retry, worker_left, and every finished
status) make any later report of the old attempt stale. A paused job whose attempt is still
set is :data:`PAUSING` (its worker is checkpointing on its way out). Resuming it does not
end that attempt: the job is queued but stays the pausing worker's
(:data:`RESUMED_WHILE_PAUSING`, kept in the record's ``resumed_while_pausing``), so its
pause checkpoint is still registered and no replica launches another worker (a launch
needs ``attempt_id`` unset). When that worker is gone the scheduler applies WORKER_LEFT,
which is not a failure (``worker_failures`` counts only RETRY), and the next attempt
continues from the pause checkpoint.
"""

from __future__ import annotations

import enum

from sqlalchemy.ext.asyncio import AsyncSession

from services.common.errors import FailedPrecondition
from services.trainer.events import ERROR, INFO, WARN, add_event
from services.trainer.records import JobRecord, Status, latest_checkpoint, now
from services.trainer.webhooks.outbox import record_job_outcome

# How far back estimated_finish's pace looks, about: older steps are halved away (note_progress).
PACE_WINDOW_S = 300.0


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
    WORKER_LEFT = "worker_left"  # a paused job's worker exited (or was stopped) on its way out


# A paused job whose files were not validated yet: stored as paused (what users see) with
# the record's `paused_while_validating` set; resuming it sends it back to validation.
PAUSED_WHILE_VALIDATING = "PAUSED_WHILE_VALIDATING_FILES"
# A paused job whose worker has not exited yet: stored as paused with `attempt_id` still set.
PAUSING = "PAUSED_WORKER_LEAVING"
# Resumed while pausing: stored as queued (what users see) with the record's
# `resumed_while_pausing` set and the pausing worker's `attempt_id` kept until it is gone.
RESUMED_WHILE_PAUSING = "QUEUED_WORKER_LEAVING"

_UNFINISHED = (
    Status.VALIDATING_FILES,
    Status.QUEUED,
    Status.RUNNING,
    Status.PAUSED,
    PAUSED_WHILE_VALIDATING,
    PAUSING,
    RESUMED_WHILE_PAUSING,
)

TRANSITIONS: dict[tuple[str, Action], str] = {
    (Status.VALIDATING_FILES, Action.FILES_VALIDATED): Status.QUEUED,
    (Status.VALIDATING_FILES, Action.PAUSE): PAUSED_WHILE_VALIDATING,
    # The files were found valid just as the pause landed: remembered; resume queues the job.
    (PAUSED_WHILE_VALIDATING, Action.FILES_VALIDATED): Status.PAUSED,
    (PAUSED_WHILE_VALIDATING, Action.RESUME): Status.VALIDATING_FILES,
    (Status.QUEUED, Action.CLAIM): Status.RUNNING,
    # A repeated claim (the worker's first answer was lost) changes nothing.
    (Status.RUNNING, Action.CLAIM): Status.RUNNING,
    (Status.RUNNING, Action.SUCCEED): Status.SUCCEEDED,
    (Status.QUEUED, Action.RETRY): Status.QUEUED,
    (Status.RUNNING, Action.RETRY): Status.QUEUED,
    # Paused with a launched worker (claimed or not), the job is PAUSING until that worker is
    # gone (state() tells it from the record's attempt_id).
    (Status.QUEUED, Action.PAUSE): Status.PAUSED,
    (Status.RUNNING, Action.PAUSE): Status.PAUSED,
    (PAUSING, Action.WORKER_LEFT): Status.PAUSED,
    (Status.PAUSED, Action.RESUME): Status.QUEUED,
    # Resumed before the pausing worker was gone: its pause checkpoint still counts.
    (PAUSING, Action.RESUME): RESUMED_WHILE_PAUSING,
    (RESUMED_WHILE_PAUSING, Action.PAUSE): Status.PAUSED,  # PAUSING again: its worker is still there
    (RESUMED_WHILE_PAUSING, Action.WORKER_LEFT): Status.QUEUED,
    # A worker told to pause may finish first: its result is kept.
    (PAUSING, Action.SUCCEED): Status.SUCCEEDED,
    (RESUMED_WHILE_PAUSING, Action.SUCCEED): Status.SUCCEEDED,
    **{(status, Action.FAIL): Status.FAILED for status in _UNFINISHED if status != PAUSED_WHILE_VALIDATING},
    **{(status, Action.CANCEL): Status.CANCELLED for status in _UNFINISHED},
}


# The status users see (and the record stores) for the states the table tells apart.
_STORED = {
    PAUSED_WHILE_VALIDATING: Status.PAUSED,
    PAUSING: Status.PAUSED,
    RESUMED_WHILE_PAUSING: Status.QUEUED,
}


def state(job: JobRecord) -> str:
    """The job's row in the table: its status, with paused kinds and a resume while pausing told apart."""
    if job.status == Status.PAUSED and job.paused_while_validating:
        return PAUSED_WHILE_VALIDATING
    if job.status == Status.PAUSED and job.attempt_id is not None:
        return PAUSING
    if job.status == Status.QUEUED and job.resumed_while_pausing:
        return RESUMED_WHILE_PAUSING
    return job.status


def allowed(status: str, action: Action) -> bool:
    """Whether ``action`` may happen to a job in ``status`` (a :func:`state`)."""
    return (status, action) in TRANSITIONS


def status_word(status: str) -> str:
    """The status as the API spells it: ``running``, ``validating_files``."""
    return status.removeprefix("JOB_STATUS_").lower()


# How a refusal says that a job has ended: "has already ...".
_ENDED = {Status.SUCCEEDED: "succeeded", Status.FAILED: "failed", Status.CANCELLED: "been cancelled"}


def refusal(job: JobRecord, action: Action) -> FailedPrecondition:
    """The error for an action the job's status does not allow, worded for whoever attempted it."""
    word = status_word(job.status)
    if action is Action.CANCEL:
        return FailedPrecondition(
            f"The job {job.id} has already {_ENDED[job.status]} and cannot be cancelled.",
            param="job_id",
            code="job_already_finished",
        )
    if action is Action.PAUSE:
        problem = "is already paused" if job.status == Status.PAUSED else f"has already {_ENDED[job.status]}"
        return FailedPrecondition(
            f"Only jobs that have not finished and are not paused can be paused; "
            f"the job {job.id} {problem}.",
            param="job_id",
            code="job_not_pausable",
        )
    if action is Action.RESUME:
        return FailedPrecondition(
            f"Only paused jobs can be resumed; the job {job.id} is {word}.", param="job_id", code="job_not_paused"
        )
    # The worker's actions: a report for a job that is not (or no longer) its to train.
    hint = "claim it first" if state(job) == Status.QUEUED else "stop"
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
    target = TRANSITIONS.get((state(job), action))
    if target is None:
        raise refusal(job, action)
    job.paused_while_validating = target == PAUSED_WHILE_VALIDATING
    job.resumed_while_pausing = target == RESUMED_WHILE_PAUSING
    job.status = _STORED.get(target, target)
    if action in (Action.RETRY, Action.WORKER_LEFT):
        # A new attempt will be launched: the old one's reports are refused from now on.
        job.attempt_id = None
    if action is Action.FAIL:
        job.error_code, job.error_message, job.error_param = error_code, error_message, error_param
        event, event_level = event or error_message, ERROR
    if target in Status.FINISHED:
        job.finished_at = now()
        # The webhook event commits (or not) with this status change: services/trainer/webhooks.
        record_job_outcome(session, job)
    if action is not Action.CLAIM:
        # A new attempt, a pause or an end: the pace measured so far no longer predicts anything.
        clear_progress(job)
    if event:
        add_event(session, job, event, level=event_level)


def note_progress(job: JobRecord, step: int, wall: float) -> None:
    """Records the step a worker reached at ``wall`` and, from the recent pace, ``estimated_finish``.

    The pace is measured from an anchor (a step and when it was reached): the attempt's first
    report, so the estimate stays null until two reports of the attempt are apart. Once the
    anchor is older than PACE_WINDOW_S it moves halfway towards now, keeping the pace measured
    so far: older steps weigh less and less, so a slow start (loading, compilation) fades out.
    """
    job.current_step = step
    if job.pace_start_step is None or job.pace_start_time is None or step < job.pace_start_step:
        job.pace_start_step, job.pace_start_time = step, wall
        return
    steps, seconds = step - job.pace_start_step, wall - job.pace_start_time
    if job.status != Status.RUNNING or not job.total_steps or steps <= 0:
        return
    seconds_per_step = seconds / steps
    job.estimated_finish = int(wall + seconds_per_step * max(0, job.total_steps - step))
    if seconds > PACE_WINDOW_S:
        job.pace_start_step += steps // 2
        job.pace_start_time = wall - seconds_per_step * (step - job.pace_start_step)


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
