"""The job state machine answers every (status, action) pair as OpenAI's job semantics expect.

The expected matrix is written out here by hand, independently of the module's table: a
change to what a job may do shows up as a diff of this picture.
"""

from __future__ import annotations

import pytest

from services.common.errors import FailedPrecondition
from services.trainer.lifecycle import Action, apply
from services.trainer.records import EventRecord, JobRecord, Status

V, Q, R, P = Status.VALIDATING_FILES, Status.QUEUED, Status.RUNNING, Status.PAUSED
S, F, C = Status.SUCCEEDED, Status.FAILED, Status.CANCELLED
A = Action
NO = None  # refused

# rows: the status before; columns: the action; cell: the status after, or NO
EXPECTED: dict[str, dict[Action, str | None]] = {
    #       files_validated     claim      succeed     fail      retry      cancel     pause       resume
    V: {A.FILES_VALIDATED: Q, A.CLAIM: NO, A.SUCCEED: NO, A.FAIL: F, A.RETRY: NO, A.CANCEL: C, A.PAUSE: NO, A.RESUME: NO},  # noqa: E501
    Q: {A.FILES_VALIDATED: NO, A.CLAIM: R, A.SUCCEED: NO, A.FAIL: F, A.RETRY: Q, A.CANCEL: C, A.PAUSE: P, A.RESUME: NO},  # noqa: E501
    R: {A.FILES_VALIDATED: NO, A.CLAIM: R, A.SUCCEED: S, A.FAIL: F, A.RETRY: Q, A.CANCEL: C, A.PAUSE: P, A.RESUME: NO},  # noqa: E501
    P: {A.FILES_VALIDATED: NO, A.CLAIM: NO, A.SUCCEED: S, A.FAIL: F, A.RETRY: NO, A.CANCEL: C, A.PAUSE: NO, A.RESUME: Q},  # noqa: E501
    S: {A.FILES_VALIDATED: NO, A.CLAIM: NO, A.SUCCEED: NO, A.FAIL: NO, A.RETRY: NO, A.CANCEL: NO, A.PAUSE: NO, A.RESUME: NO},  # noqa: E501
    F: {A.FILES_VALIDATED: NO, A.CLAIM: NO, A.SUCCEED: NO, A.FAIL: NO, A.RETRY: NO, A.CANCEL: NO, A.PAUSE: NO, A.RESUME: NO},  # noqa: E501
    C: {A.FILES_VALIDATED: NO, A.CLAIM: NO, A.SUCCEED: NO, A.FAIL: NO, A.RETRY: NO, A.CANCEL: NO, A.PAUSE: NO, A.RESUME: NO},  # noqa: E501
}  # fmt: skip

PAIRS = [(status, action) for status in EXPECTED for action in Action]


class _Session:
    """Collects what apply() adds, in place of a database session."""

    def __init__(self) -> None:
        self.added: list[object] = []

    def add(self, row: object) -> None:
        self.added.append(row)


def a_job(status: str) -> JobRecord:
    return JobRecord(
        id="ftjob-x", organization_id="org-a", status=status, attempt_id="attempt-1", estimated_finish=99
    )


def test_the_matrix_covers_every_status_and_action() -> None:
    every_status = {value for name, value in vars(Status).items() if name.isupper() and isinstance(value, str)}
    assert set(EXPECTED) == every_status
    assert all(set(row) == set(Action) for row in EXPECTED.values())


@pytest.mark.parametrize(("status", "action"), PAIRS, ids=[f"{s.lower()}-{a}" for s, a in PAIRS])
def test_every_status_and_action_pair_has_the_expected_answer(status: str, action: Action) -> None:
    job, session = a_job(status), _Session()
    expected = EXPECTED[status][action]
    if expected is None:
        with pytest.raises(FailedPrecondition) as refused:
            apply(session, job, action, event="should not be written")  # type: ignore[arg-type]
        assert refused.value.param == "job_id" and job.status == status and not session.added
        return
    apply(session, job, action, event="it happened", error_message="it broke", error_code="e")  # type: ignore[arg-type]
    assert job.status == expected
    assert [e.message for e in session.added if isinstance(e, EventRecord)] == ["it happened"]
    assert (job.finished_at is not None) == (expected in Status.FINISHED)
    if action in (Action.RETRY, Action.RESUME):
        assert job.attempt_id is None, "the old attempt's reports must be refused from now on"
    if action is Action.FAIL:
        assert (job.error_code, job.error_message) == ("e", "it broke")


def test_refusals_say_what_the_user_tried() -> None:
    with pytest.raises(FailedPrecondition, match="has already succeeded and cannot be cancelled") as cancel:
        apply(_Session(), a_job(S), Action.CANCEL)  # type: ignore[arg-type]
    assert cancel.value.code == "job_already_finished"
    with pytest.raises(FailedPrecondition, match="Only queued or running jobs can be paused") as pause:
        apply(_Session(), a_job(V), Action.PAUSE)  # type: ignore[arg-type]
    assert pause.value.code == "job_not_pausable"
    with pytest.raises(FailedPrecondition, match="Only paused jobs can be resumed") as resume:
        apply(_Session(), a_job(R), Action.RESUME)  # type: ignore[arg-type]
    assert resume.value.code == "job_not_paused"
    with pytest.raises(FailedPrecondition, match="is queued; claim it first") as report:
        apply(_Session(), a_job(Q), Action.SUCCEED)  # type: ignore[arg-type]
    assert report.value.code == "job_queued"
