"""A run's status machine: what may happen when, and the webhook event each ending writes."""

from __future__ import annotations

from typing import Any

import pytest

from services.common.errors import FailedPrecondition
from services.trainer.evals import run_status
from services.trainer.evals.records import EvalRunRecord
from services.trainer.evals.run_status import Action
from services.trainer.records import WebhookEventRecord


class Session:
    """Collects what a transition adds."""

    def __init__(self) -> None:
        self.added: list[Any] = []

    def add(self, row: Any) -> None:
        self.added.append(row)


def run(status: str) -> EvalRunRecord:
    return EvalRunRecord(id="evalrun_1", organization_id="org-a", status=status, finished_at=None)


def test_starting_writes_no_event() -> None:
    session, started = Session(), run(run_status.QUEUED)
    run_status.apply(session, started, Action.START)  # type: ignore[arg-type]
    assert started.status == run_status.IN_PROGRESS and started.finished_at is None and not session.added


@pytest.mark.parametrize(
    ("action", "status", "event"),
    [
        (Action.COMPLETE, run_status.COMPLETED, "eval.run.succeeded"),
        (Action.FAIL, run_status.FAILED, "eval.run.failed"),
        (Action.CANCEL, run_status.CANCELED, "eval.run.canceled"),
    ],
)
def test_each_ending_writes_its_event(action: Action, status: str, event: str) -> None:
    for start in run_status.SAMPLING:
        session, ended = Session(), run(start)
        run_status.apply(session, ended, action, error_code="x", error_message="why")  # type: ignore[arg-type]
        assert ended.status == status and ended.finished_at is not None
        [row] = session.added
        assert isinstance(row, WebhookEventRecord)
        assert (row.type, row.object_id, row.organization_id) == (event, "evalrun_1", "org-a")
        assert (ended.error_code == "x") == (action is Action.FAIL)


@pytest.mark.parametrize("status", sorted(run_status.ENDED))
def test_an_ended_run_cannot_be_cancelled(status: str) -> None:
    with pytest.raises(FailedPrecondition) as raised:
        run_status.apply(Session(), run(status), Action.CANCEL)  # type: ignore[arg-type]
    assert raised.value.param == "run_id" and raised.value.code == "eval_run_already_finished"
    assert f"is {status}" in raised.value.message


def test_statuses_map_to_the_contracts_enum_both_ways() -> None:
    for status in (*run_status.SAMPLING, *run_status.ENDED):
        assert run_status.from_enum(run_status.to_enum(status)) == status
    assert run_status.from_enum(0) is None
