"""The job state machine answers every (status, action) pair as OpenAI's job semantics expect.

The expected matrix is written out here by hand, independently of the module's table: a
change to what a job may do shows up as a diff of this picture.
"""

from __future__ import annotations

import pytest

from services.common.errors import FailedPrecondition
from services.trainer.lifecycle import (
    PAUSED_WHILE_VALIDATING,
    PAUSING,
    RESUMED_WHILE_PAUSING,
    Action,
    apply,
    state,
)
from services.trainer.records import EventRecord, JobRecord, Status

V, Q, R, P = Status.VALIDATING_FILES, Status.QUEUED, Status.RUNNING, Status.PAUSED
PV = PAUSED_WHILE_VALIDATING  # shown as paused; resumes to validating_files
PW = PAUSING  # shown as paused; its worker (the job's attempt) is still on its way out
RW = RESUMED_WHILE_PAUSING  # shown as queued; the pausing worker keeps the job until it is gone
# What users see (and the record stores) for the states the table tells apart.
SHOWN = {PV: Status.PAUSED, PW: Status.PAUSED, RW: Status.QUEUED}
S, F, C = Status.SUCCEEDED, Status.FAILED, Status.CANCELLED
A = Action
NO = None  # refused

# rows: the status before; columns: the action; cell: the status after, or NO. Every row but
# P and PV has a worker launched (the job's attempt is set), so a pause from Q or R is PW.
EXPECTED: dict[str, dict[Action, str | None]] = {
    #       files_validated     claim      succeed     fail      retry      cancel     pause       resume    worker_left  # noqa: E501
    V: {A.FILES_VALIDATED: Q, A.CLAIM: NO, A.SUCCEED: NO, A.FAIL: F, A.RETRY: NO, A.CANCEL: C, A.PAUSE: PV, A.RESUME: NO, A.WORKER_LEFT: NO},  # noqa: E501
    PV: {A.FILES_VALIDATED: P, A.CLAIM: NO, A.SUCCEED: NO, A.FAIL: NO, A.RETRY: NO, A.CANCEL: C, A.PAUSE: NO, A.RESUME: V, A.WORKER_LEFT: NO},  # noqa: E501
    Q: {A.FILES_VALIDATED: NO, A.CLAIM: R, A.SUCCEED: NO, A.FAIL: F, A.RETRY: Q, A.CANCEL: C, A.PAUSE: PW, A.RESUME: NO, A.WORKER_LEFT: NO},  # noqa: E501
    R: {A.FILES_VALIDATED: NO, A.CLAIM: R, A.SUCCEED: S, A.FAIL: F, A.RETRY: Q, A.CANCEL: C, A.PAUSE: PW, A.RESUME: NO, A.WORKER_LEFT: NO},  # noqa: E501
    P: {A.FILES_VALIDATED: NO, A.CLAIM: NO, A.SUCCEED: NO, A.FAIL: F, A.RETRY: NO, A.CANCEL: C, A.PAUSE: NO, A.RESUME: Q, A.WORKER_LEFT: NO},  # noqa: E501
    PW: {A.FILES_VALIDATED: NO, A.CLAIM: NO, A.SUCCEED: S, A.FAIL: F, A.RETRY: NO, A.CANCEL: C, A.PAUSE: NO, A.RESUME: RW, A.WORKER_LEFT: P},  # noqa: E501
    RW: {A.FILES_VALIDATED: NO, A.CLAIM: NO, A.SUCCEED: S, A.FAIL: F, A.RETRY: NO, A.CANCEL: C, A.PAUSE: PW, A.RESUME: NO, A.WORKER_LEFT: Q},  # noqa: E501
    S: {A.FILES_VALIDATED: NO, A.CLAIM: NO, A.SUCCEED: NO, A.FAIL: NO, A.RETRY: NO, A.CANCEL: NO, A.PAUSE: NO, A.RESUME: NO, A.WORKER_LEFT: NO},  # noqa: E501
    F: {A.FILES_VALIDATED: NO, A.CLAIM: NO, A.SUCCEED: NO, A.FAIL: NO, A.RETRY: NO, A.CANCEL: NO, A.PAUSE: NO, A.RESUME: NO, A.WORKER_LEFT: NO},  # noqa: E501
    C: {A.FILES_VALIDATED: NO, A.CLAIM: NO, A.SUCCEED: NO, A.FAIL: NO, A.RETRY: NO, A.CANCEL: NO, A.PAUSE: NO, A.RESUME: NO, A.WORKER_LEFT: NO},  # noqa: E501
}  # fmt: skip

PAIRS = [(status, action) for status in EXPECTED for action in Action]


class _Session:
    """Collects what apply() adds, in place of a database session."""

    def __init__(self) -> None:
        self.added: list[object] = []

    def add(self, row: object) -> None:
        self.added.append(row)


def a_job(status: str) -> JobRecord:
    """A job in ``status``, a row of the matrix (PV, PW, RW: stored as users see them, with the flag set)."""
    return JobRecord(
        id="ftjob-x",
        organization_id="org-a",
        status=SHOWN.get(status, status),
        paused_while_validating=status == PV,
        resumed_while_pausing=status == RW,
        attempt_id=None if status in (P, PV) else "attempt-1",
        estimated_finish=99,
    )


def test_the_matrix_covers_every_status_and_action() -> None:
    every_status = {value for name, value in vars(Status).items() if name.isupper() and isinstance(value, str)}
    assert set(EXPECTED) == every_status | {PV, PW, RW}
    assert all(set(row) == set(Action) for row in EXPECTED.values())


@pytest.mark.parametrize(("status", "action"), PAIRS, ids=[f"{s.lower()}-{a}" for s, a in PAIRS])
def test_every_status_and_action_pair_has_the_expected_answer(status: str, action: Action) -> None:
    job, session = a_job(status), _Session()
    expected = EXPECTED[status][action]
    if expected is None:
        with pytest.raises(FailedPrecondition) as refused:
            apply(session, job, action, event="should not be written")  # type: ignore[arg-type]
        assert refused.value.param == "job_id" and state(job) == status and not session.added
        return
    apply(session, job, action, event="it happened", error_message="it broke", error_code="e")  # type: ignore[arg-type]
    assert state(job) == expected
    assert job.status == SHOWN.get(expected, expected), "users see one paused status, one queued status"
    assert [e.message for e in session.added if isinstance(e, EventRecord)] == ["it happened"]
    assert (job.finished_at is not None) == (expected in Status.FINISHED)
    if action in (Action.RETRY, Action.WORKER_LEFT):
        assert job.attempt_id is None, "the old attempt's reports must be refused from now on"
    if status == PW and action is Action.RESUME:
        assert job.attempt_id == "attempt-1", "the pausing worker keeps the job: its pause checkpoint counts"
    if action is Action.FAIL:
        assert (job.error_code, job.error_message) == ("e", "it broke")


def test_refusals_say_what_the_user_tried() -> None:
    with pytest.raises(FailedPrecondition, match="has already succeeded and cannot be cancelled") as cancel:
        apply(_Session(), a_job(S), Action.CANCEL)  # type: ignore[arg-type]
    assert cancel.value.code == "job_already_finished"
    with pytest.raises(FailedPrecondition, match="the job ftjob-x has already succeeded") as pause:
        apply(_Session(), a_job(S), Action.PAUSE)  # type: ignore[arg-type]
    assert pause.value.code == "job_not_pausable"
    with pytest.raises(FailedPrecondition, match="the job ftjob-x is already paused"):
        apply(_Session(), a_job(PV), Action.PAUSE)  # type: ignore[arg-type]
    with pytest.raises(FailedPrecondition, match="Only paused jobs can be resumed") as resume:
        apply(_Session(), a_job(R), Action.RESUME)  # type: ignore[arg-type]
    assert resume.value.code == "job_not_paused"
    with pytest.raises(FailedPrecondition, match="is queued; claim it first") as report:
        apply(_Session(), a_job(Q), Action.SUCCEED)  # type: ignore[arg-type]
    assert report.value.code == "job_queued"


@pytest.mark.parametrize(
    ("paused_from", "resumed_to"),
    [(V, V), (Q, Q), (R, Q)],
    ids=["validating_files-back-to-validation", "queued-back-to-queue", "running-back-to-queue"],
)
def test_a_paused_job_resumes_where_it_was(paused_from: str, resumed_to: str) -> None:
    job, session = a_job(paused_from), _Session()
    apply(session, job, Action.PAUSE)  # type: ignore[arg-type]
    assert job.status == P
    apply(session, job, Action.RESUME)  # type: ignore[arg-type]
    assert job.status == resumed_to and not job.paused_while_validating


def test_files_found_valid_during_a_pause_keep_it_paused_and_queue_it_on_resume() -> None:
    job, session = a_job(V), _Session()
    apply(session, job, Action.PAUSE)  # type: ignore[arg-type]
    apply(session, job, Action.FILES_VALIDATED)  # type: ignore[arg-type]
    assert job.status == P
    apply(session, job, Action.RESUME)  # type: ignore[arg-type]
    assert job.status == Q, "validation already done: no second check"


def test_a_job_resumed_while_its_worker_pauses_is_queued_for_a_new_attempt_once_that_worker_left() -> None:
    job, session = a_job(R), _Session()
    apply(session, job, Action.PAUSE)  # type: ignore[arg-type]
    apply(session, job, Action.RESUME)  # type: ignore[arg-type]
    assert (job.status, job.attempt_id) == (Q, "attempt-1"), "no other worker may start while it leaves"
    apply(session, job, Action.WORKER_LEFT)  # type: ignore[arg-type]
    assert (state(job), job.attempt_id, job.worker_failures) == (Q, None, None), "a pause is no failure"
