"""The records of evals: evals, runs, a run's items to sample, and its graded output items.

They live on the trainer's :class:`~services.trainer.records.Base`, so
``TrainerRecords.create_schema`` creates their tables with the others. Every row carries its
organization (run items through their run); every query the eval logic makes for a caller
filters by it, so another organization's eval or run reads as missing. Listings are ordered
by the autoincrement ``seq`` (see :func:`services.common.database.paginate`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from services.common.database import first_or_none
from services.common.not_found import eval_not_found, eval_run_not_found
from services.trainer.records import Base


class EvalRecord(Base):
    """One eval: the schema its items match and the criteria each sample is graded by."""

    __tablename__ = "evals"
    __table_args__ = (Index("ix_evals_organization_seq", "organization_id", "seq"),)

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String, unique=True)
    organization_id: Mapped[str] = mapped_column(String)
    created_at: Mapped[int] = mapped_column(BigInteger)
    name: Mapped[str] = mapped_column(String, default="")
    user_metadata: Mapped[dict[str, str]] = mapped_column("metadata", JSON, default=dict)
    item_schema: Mapped[dict[str, Any]] = mapped_column(JSON)
    include_sample_schema: Mapped[bool] = mapped_column(Boolean, default=False)
    # The TestingCriterion messages in their dict form (conversions.message_to_dict).
    testing_criteria: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)


class EvalRunRecord(Base):
    """One run of an eval against a model: what to sample, where it is, and how its items came out."""

    __tablename__ = "eval_runs"
    __table_args__ = (
        Index("ix_eval_runs_eval_seq", "eval_id", "seq"),
        Index("ix_eval_runs_status_seq", "status", "seq"),
    )

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String, unique=True)
    eval_id: Mapped[str] = mapped_column(String)
    organization_id: Mapped[str] = mapped_column(String)
    created_at: Mapped[int] = mapped_column(BigInteger)
    name: Mapped[str] = mapped_column(String, default="")
    user_metadata: Mapped[dict[str, str]] = mapped_column("metadata", JSON, default=dict)
    model: Mapped[str] = mapped_column(String)
    status: Mapped[str] = mapped_column(String)  # a run_status word: queued, in_progress, ...
    # [{"role": ..., "content": ...}] templates, or (when empty) the item field holding each item's messages.
    input_messages: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    item_reference: Mapped[str] = mapped_column(String, default="")
    # The EvalSamplingParams fields that are set.
    sampling_params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    source_file_id: Mapped[str] = mapped_column(String, default="")
    total: Mapped[int] = mapped_column(BigInteger, default=0)
    errored: Mapped[int] = mapped_column(BigInteger, default=0)
    failed: Mapped[int] = mapped_column(BigInteger, default=0)
    passed: Mapped[int] = mapped_column(BigInteger, default=0)
    # {criterion name: {"passed": n, "failed": n}}, in the eval's criteria order.
    per_criterion: Mapped[dict[str, dict[str, int]]] = mapped_column(JSON, default=dict)
    # {model name: {"invocation_count": n, "prompt_tokens": n, ...}}.
    usage: Mapped[dict[str, dict[str, int]]] = mapped_column(JSON, default=dict)
    error_code: Mapped[str] = mapped_column(String, default="")
    error_message: Mapped[str] = mapped_column(String, default="")
    finished_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class EvalRunItemRecord(Base):
    """One item of a run, waiting to be sampled (pending), handed to a sampler (leased) or graded (done)."""

    __tablename__ = "eval_run_items"
    __table_args__ = (
        UniqueConstraint("run_id", "item_index", name="uq_eval_run_items_run_index"),
        Index("ix_eval_run_items_run_state", "run_id", "state", "item_index"),
    )

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String)
    item_index: Mapped[int] = mapped_column(BigInteger)
    item: Mapped[dict[str, Any]] = mapped_column(JSON)
    # The row's `sample` object when the source gave one; None otherwise.
    sample: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    state: Mapped[str] = mapped_column(String, default="pending")  # pending, leased, done
    lease_until: Mapped[float | None] = mapped_column(Float, nullable=True)


class EvalOutputItemRecord(Base):
    """One graded item of a run: the sample the model gave and each criterion's grade."""

    __tablename__ = "eval_output_items"
    __table_args__ = (Index("ix_eval_output_items_run_seq", "run_id", "seq"),)

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String, unique=True)
    organization_id: Mapped[str] = mapped_column(String)
    eval_id: Mapped[str] = mapped_column(String)
    run_id: Mapped[str] = mapped_column(String)
    created_at: Mapped[int] = mapped_column(BigInteger)
    item_index: Mapped[int] = mapped_column(BigInteger)
    item_json: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String)  # pass, fail, error
    # The EvalSample message in its dict form; the EvalGrade messages likewise.
    sample: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    results: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)


async def eval_of(session: AsyncSession, eval_id: str, organization_id: str) -> EvalRecord:
    """The organization's eval; NOT_FOUND when it is missing or another organization's."""
    query = select(EvalRecord).where(EvalRecord.id == eval_id, EvalRecord.organization_id == organization_id)
    found = await first_or_none(session, query)
    if found is None:
        raise eval_not_found(eval_id)
    return found


async def run_of(session: AsyncSession, eval_id: str, run_id: str, organization_id: str) -> EvalRunRecord:
    """The organization's run of that eval; NOT_FOUND (naming the eval first) otherwise."""
    await eval_of(session, eval_id, organization_id)
    query = select(EvalRunRecord).where(
        EvalRunRecord.id == run_id,
        EvalRunRecord.eval_id == eval_id,
        EvalRunRecord.organization_id == organization_id,
    )
    found = await first_or_none(session, query)
    if found is None:
        raise eval_run_not_found(run_id)
    return found
