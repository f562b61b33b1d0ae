"""A run's status machine, in one table, and the webhook event each ending writes.

::

    queued --start--> in_progress --complete--> completed
       |                  |   |
       |                  |   +--fail--> failed      (every item's sampling failed)
       +-----cancel-------+--cancel--> canceled

    complete and fail may also come straight from queued (a run whose last items were
    settled at the claim that would have started it).

Statuses are stored as the API spells them (``queued``, ``in_progress``, ...); the
EvalRunStatus enum of the contract is derived here. Every change goes through
:func:`apply` inside the caller's write transaction: it refuses what the table does not
hold, stamps the finish time and writes the ending's webhook event in the same
transaction, so the event commits (or not) with the status change.
"""

from __future__ import annotations

import enum

from sqlalchemy.ext.asyncio import AsyncSession

from services.common.errors import FailedPrecondition
from services.trainer.evals.records import EvalRunRecord
from services.trainer.records import now
from services.trainer.webhooks.events import EVAL_RUN_CANCELED, EVAL_RUN_FAILED, EVAL_RUN_SUCCEEDED
from services.trainer.webhooks.outbox import record_event
from tailor.trainer.v1 import eval_service_pb2 as eval_pb2

QUEUED = "queued"
IN_PROGRESS = "in_progress"
COMPLETED = "completed"
FAILED = "failed"
CANCELED = "canceled"

# Runs whose items the sampler may still be handed.
SAMPLING = (QUEUED, IN_PROGRESS)
ENDED = frozenset({COMPLETED, FAILED, CANCELED})


class Action(enum.StrEnum):
    START = "start"  # a sampler claimed its first items
    COMPLETE = "complete"  # its last item was recorded
    FAIL = "fail"  # its last item was recorded and none could be sampled
    CANCEL = "cancel"  # the user cancelled it


TRANSITIONS: dict[tuple[str, Action], str] = {
    (QUEUED, Action.START): IN_PROGRESS,
    **{(status, Action.COMPLETE): COMPLETED for status in SAMPLING},
    **{(status, Action.FAIL): FAILED for status in SAMPLING},
    **{(status, Action.CANCEL): CANCELED for status in SAMPLING},
}

_WEBHOOK_EVENT = {COMPLETED: EVAL_RUN_SUCCEEDED, FAILED: EVAL_RUN_FAILED, CANCELED: EVAL_RUN_CANCELED}

_ENUM = {
    QUEUED: eval_pb2.EVAL_RUN_STATUS_QUEUED,
    IN_PROGRESS: eval_pb2.EVAL_RUN_STATUS_IN_PROGRESS,
    COMPLETED: eval_pb2.EVAL_RUN_STATUS_COMPLETED,
    FAILED: eval_pb2.EVAL_RUN_STATUS_FAILED,
    CANCELED: eval_pb2.EVAL_RUN_STATUS_CANCELED,
}
_WORD = {value: word for word, value in _ENUM.items()}


def to_enum(status: str) -> int:
    """The contract's EvalRunStatus of a stored status."""
    return _ENUM[status]


def from_enum(value: int) -> str | None:
    """The stored status of an EvalRunStatus; None for UNSPECIFIED (or an unknown value)."""
    return _WORD.get(value)


def apply(
    session: AsyncSession,
    run: EvalRunRecord,
    action: Action,
    *,
    error_code: str = "",
    error_message: str = "",
) -> None:
    """Moves ``run`` by ``action`` in the caller's transaction, or raises FAILED_PRECONDITION."""
    target = TRANSITIONS.get((run.status, action))
    if target is None:
        raise FailedPrecondition(
            f"The eval run {run.id} is {run.status} and cannot be {_PAST[action]}.",
            param="run_id",
            code="eval_run_already_finished" if run.status in ENDED else "invalid_state",
        )
    run.status = target
    if action is Action.FAIL:
        run.error_code, run.error_message = error_code, error_message
    if target in ENDED:
        run.finished_at = now()
        record_event(session, run.organization_id, _WEBHOOK_EVENT[target], run.id)


_PAST = {
    Action.START: "started",
    Action.COMPLETE: "completed",
    Action.FAIL: "failed",
    Action.CANCEL: "canceled",
}
