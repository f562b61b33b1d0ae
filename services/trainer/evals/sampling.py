"""The gateway sampler's side of a run: leasing pending items, recording and grading their answers.

Claims take items of the oldest queued or running run first (one run per claim), pending
ones and those whose lease ran out without a record, and lease them for ``lease_s``; the
run becomes ``in_progress``. Records grade each answer (:mod:`.grading`), store it as an
output item and mark the item done, in one transaction with the run's counts; a repeated
record of a done item is ignored, so a sampler may retry. When no item is left the run
completes, or fails when every item errored (nothing was graded). A cancelled or deleted
run answers ``run_cancelled`` and stores nothing.

These calls carry no organization: the trainer knows each run's and hands it out with the
work. Within one process the records' write lock serializes them; trainer replicas sharing
one Postgres lock the run's row (``FOR UPDATE``, which SQLite ignores) so that counts are
never lost, and skip items another replica is leasing. Recording is idempotent either way:
a second answer for a done item is ignored.
"""

from __future__ import annotations

import json
import time

from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.database import first_or_none
from services.common.errors import InvalidArgument
from services.common.ids import random_token
from services.trainer.conversions import message_from, message_to_dict
from services.trainer.evals import run_status
from services.trainer.evals.conversions import criteria_from_record
from services.trainer.evals.grading import ERROR, TEMPLATE_ERROR, Outcome, errored, grade_sample, tally
from services.trainer.evals.items import referenced_messages, rendered_messages
from services.trainer.evals.records import (
    EvalOutputItemRecord,
    EvalRecord,
    EvalRunItemRecord,
    EvalRunRecord,
)
from services.trainer.evals.templates import TemplateError
from services.trainer.records import TrainerRecords, now
from tailor.trainer.v1 import eval_service_pb2 as eval_pb2

PENDING = "pending"
LEASED = "leased"
DONE = "done"
MAX_CLAIMED_ITEMS = 64
MAX_LEASE_S = 86_400  # a day: the gateway's gateway_eval_sampler_lease_s may be as long
ALL_ITEMS_ERRORED = "all_items_errored"


def _claimable(wall: float):  # type: ignore[no-untyped-def]
    """Items that may be handed out at ``wall``: pending, or leased with the lease run out."""
    return or_(
        EvalRunItemRecord.state == PENDING,
        and_(EvalRunItemRecord.state == LEASED, EvalRunItemRecord.lease_until < wall),
    )


def _messages(run: EvalRunRecord, item: EvalRunItemRecord) -> list[dict[str, str]]:
    """The chat messages to send for an item: the run's templates rendered, or the item's own."""
    if run.item_reference:
        return referenced_messages(item.item, run.item_reference)
    return rendered_messages(run.input_messages, item.item)


def _store(session: AsyncSession, run: EvalRunRecord, item: EvalRunItemRecord, outcome: Outcome) -> None:
    """The item's output item, its counts in the run, and the item done."""
    session.add(
        EvalOutputItemRecord(
            id=f"outputitem_{random_token(24)}",
            organization_id=run.organization_id,
            eval_id=run.eval_id,
            run_id=run.id,
            created_at=now(),
            item_index=item.item_index,
            item_json=json.dumps(item.item, ensure_ascii=False),
            status=outcome.status,
            sample=message_to_dict(outcome.sample),
            results=[
                {"name": g.name, "type": g.type, "score": g.score, "passed": g.passed} for g in outcome.grades
            ],
        )
    )
    tally(run, outcome)
    item.state, item.lease_until = DONE, None


async def _settle(session: AsyncSession, run: EvalRunRecord) -> None:
    """Ends the run when no item is left: completed, or failed when every item errored."""
    await session.flush()
    left = await session.scalar(
        select(func.count()).where(EvalRunItemRecord.run_id == run.id, EvalRunItemRecord.state != DONE)
    )
    if left:
        return
    if run.total and run.errored == run.total:
        first = await first_or_none(
            session,
            select(EvalOutputItemRecord)
            .where(EvalOutputItemRecord.run_id == run.id, EvalOutputItemRecord.status == ERROR)
            .order_by(EvalOutputItemRecord.item_index),
        )
        why = first.sample.get("error_message", "") if first is not None else ""
        run_status.apply(
            session,
            run,
            run_status.Action.FAIL,
            error_code=ALL_ITEMS_ERRORED,
            error_message=f"Every item of the run errored; the first: {why}",
        )
    else:
        run_status.apply(session, run, run_status.Action.COMPLETE)


class Sampling:
    """ClaimEvalSamples and RecordEvalSamples."""

    def __init__(self, records: TrainerRecords) -> None:
        self._records = records

    async def claim(self, request: eval_pb2.ClaimEvalSamplesRequest) -> eval_pb2.ClaimEvalSamplesResponse:
        if not 1 <= request.max_items <= MAX_CLAIMED_ITEMS:
            raise InvalidArgument(f"max_items must be between 1 and {MAX_CLAIMED_ITEMS}.", param="max_items")
        if not 1 <= request.lease_s <= MAX_LEASE_S:
            raise InvalidArgument(f"lease_s must be between 1 and {MAX_LEASE_S}.", param="lease_s")
        async with self._records.write() as session:
            while True:
                wall = time.time()
                run = await first_or_none(
                    session,
                    select(EvalRunRecord)
                    .where(
                        EvalRunRecord.status.in_(run_status.SAMPLING),
                        exists().where(EvalRunItemRecord.run_id == EvalRunRecord.id, _claimable(wall)),
                    )
                    .order_by(EvalRunRecord.seq)
                    .with_for_update(),
                )
                if run is None:
                    return eval_pb2.ClaimEvalSamplesResponse()
                tasks = await self._lease(session, run, wall, request.max_items, request.lease_s)
                if tasks is None:
                    return eval_pb2.ClaimEvalSamplesResponse()  # another replica is leasing them
                if tasks:
                    return eval_pb2.ClaimEvalSamplesResponse(
                        run_id=run.id,
                        eval_id=run.eval_id,
                        organization_id=run.organization_id,
                        model=run.model,
                        sampling_params=message_from(eval_pb2.EvalSamplingParams, run.sampling_params),
                        tasks=tasks,
                    )
                # Every claimed item was settled as an error; the run may have ended: look again.

    async def _lease(
        self, session: AsyncSession, run: EvalRunRecord, wall: float, max_items: int, lease_s: int
    ) -> list[eval_pb2.EvalSampleTask] | None:
        """Leases up to ``max_items`` of the run's claimable items; an item that cannot be rendered errors.

        None when there was none to take (another replica holds them locked).
        """
        items = (
            await session.execute(
                select(EvalRunItemRecord)
                .where(EvalRunItemRecord.run_id == run.id, _claimable(wall))
                .order_by(EvalRunItemRecord.item_index)
                .limit(max_items)
                .with_for_update(skip_locked=True)
            )
        ).scalars().all()
        if not items:
            return None
        if run.status == run_status.QUEUED:
            run_status.apply(session, run, run_status.Action.START)
        tasks = []
        for item in items:
            try:
                messages = _messages(run, item)
            except (TemplateError, ValueError) as error:
                outcome = errored(eval_pb2.EvalSample(), TEMPLATE_ERROR, str(error), answered=False)
                _store(session, run, item, outcome)
                continue
            item.state, item.lease_until = LEASED, wall + lease_s
            tasks.append(
                eval_pb2.EvalSampleTask(
                    item_index=item.item_index, messages=[eval_pb2.EvalMessage(**m) for m in messages]
                )
            )
        if not tasks:
            await _settle(session, run)
        return tasks

    async def record(self, request: eval_pb2.RecordEvalSamplesRequest) -> eval_pb2.RecordEvalSamplesResponse:
        if not request.run_id:
            raise InvalidArgument("run_id is required.", param="run_id")
        async with self._records.write() as session:
            query = select(EvalRunRecord).where(EvalRunRecord.id == request.run_id).with_for_update()
            run = await first_or_none(session, query)
            if run is None or run.status == run_status.CANCELED:
                return eval_pb2.RecordEvalSamplesResponse(run_cancelled=True)
            if run.status in run_status.ENDED:
                return eval_pb2.RecordEvalSamplesResponse()  # every item was recorded already
            indices = {sampled.item_index for sampled in request.items}
            items = {
                item.item_index: item
                for item in (
                    await session.execute(
                        select(EvalRunItemRecord).where(
                            EvalRunItemRecord.run_id == run.id, EvalRunItemRecord.item_index.in_(indices)
                        )
                    )
                ).scalars()
            }
            for position, sampled in enumerate(request.items):
                if sampled.item_index not in items:
                    raise InvalidArgument(
                        f"items[{position}].item_index: the run has no item {sampled.item_index}.",
                        param=f"items[{position}].item_index",
                    )
            definition = await first_or_none(session, select(EvalRecord).where(EvalRecord.id == run.eval_id))
            criteria = criteria_from_record(definition) if definition is not None else []
            for sampled in request.items:
                item = items[sampled.item_index]
                if item.state != DONE:
                    _store(session, run, item, grade_sample(criteria, item.item, sampled.sample))
            await _settle(session, run)
        return eval_pb2.RecordEvalSamplesResponse()
