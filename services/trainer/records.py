"""The trainer's durable records: jobs, their events and checkpoints, and registered models.

Every row carries its organization, and every query the trainer makes filters by it.
Listings are newest first by the autoincrement ``seq`` (see
:func:`services.common.database.paginate`). Times are Unix seconds.

:class:`TrainerRecords` is the one way to open a transaction. Writes are serialized
inside the process: job state changes read a row, check its status and write it back,
and SQLite (the default) refuses rather than waits when two transactions race that
way. One trainer process owns the records (it also owns the workers it launched).
Nothing serializes two processes: the SQLite driver begins a transaction at its first
write, not at the read before it, and Postgres reads committed rows; what several
replicas on one Postgres can and cannot share is in :mod:`services.trainer.scheduler`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    Index,
    Integer,
    String,
    UniqueConstraint,
    false,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.common.database import Database, first_or_none, sqlite_url
from services.trainer.config import TrainerSettings
from tailor.trainer.v1 import job_pb2


def now() -> int:
    """The current time in Unix seconds, as the API reports times."""
    return int(time.time())


class Status:
    """Job statuses as stored: the names of the JobStatus enum of job.proto."""

    VALIDATING_FILES = job_pb2.JobStatus.Name(job_pb2.JOB_STATUS_VALIDATING_FILES)
    QUEUED = job_pb2.JobStatus.Name(job_pb2.JOB_STATUS_QUEUED)
    RUNNING = job_pb2.JobStatus.Name(job_pb2.JOB_STATUS_RUNNING)
    SUCCEEDED = job_pb2.JobStatus.Name(job_pb2.JOB_STATUS_SUCCEEDED)
    FAILED = job_pb2.JobStatus.Name(job_pb2.JOB_STATUS_FAILED)
    CANCELLED = job_pb2.JobStatus.Name(job_pb2.JOB_STATUS_CANCELLED)
    PAUSED = job_pb2.JobStatus.Name(job_pb2.JOB_STATUS_PAUSED)

    # No worker will ever run for a job in one of these again.
    FINISHED = frozenset({SUCCEEDED, FAILED, CANCELLED})


class Base(DeclarativeBase):
    pass


# Times, token counts and steps are BigInteger: Postgres' INTEGER is 32 bits (times overflow in
# 2038, token counts much sooner). `seq` stays INTEGER: SQLite autoincrements only INTEGER keys.


class JobRecord(Base):
    """One fine-tuning job, with what its current worker attempt has reported."""

    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("organization_id", "idempotency_key", name="uq_jobs_idempotency"),
        Index("ix_jobs_organization_seq", "organization_id", "seq"),
        Index("ix_jobs_status", "status"),
    )

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String, unique=True)
    organization_id: Mapped[str] = mapped_column(String)
    created_at: Mapped[int] = mapped_column(BigInteger)

    # What was asked for.
    model: Mapped[str] = mapped_column(String)
    base_model: Mapped[str] = mapped_column(String)
    training_file: Mapped[str] = mapped_column(String)
    validation_file: Mapped[str] = mapped_column(String, default="")
    method_type: Mapped[str] = mapped_column(String)  # a MethodType name, e.g. METHOD_TYPE_SUPERVISED
    # The hyperparameters as requested (only the fields given); replaced by the resolved ones once known.
    hyperparameters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    suffix: Mapped[str] = mapped_column(String, default="")
    seed: Mapped[int] = mapped_column(BigInteger)
    user_metadata: Mapped[dict[str, str]] = mapped_column("metadata", JSON, default=dict)
    # OpenAI's integrations as requested: [{"type": "wandb", "wandb": {"project": ..., ...}}] (the
    # contract's Integration as a dict; never an API key). Added after the first release.
    integrations: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list, server_default="[]")
    priority: Mapped[int] = mapped_column(Integer, default=0)
    idempotency_key: Mapped[str | None] = mapped_column(String, nullable=True)
    request_fingerprint: Mapped[str] = mapped_column(String)
    # The 8-character id segment of the job's model name, fixed at creation so that
    # checkpoint names (taken before the job ends) share it.
    model_id_segment: Mapped[str] = mapped_column(String)
    # The adapter to continue from when `model` was a fine-tuned model; empty otherwise.
    initial_adapter_uri: Mapped[str] = mapped_column(String, default="")

    # Where it is.
    status: Mapped[str] = mapped_column(String)  # a JobStatus name, e.g. JOB_STATUS_QUEUED
    # Paused before its files were validated: resuming sends it back to validation
    # (services/trainer/lifecycle.py). Added after the first release: created on older
    # databases by services.common.database.add_new_columns.
    paused_while_validating: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Resumed while its paused worker was still on its way out: queued, but that worker's attempt
    # keeps the job (its pause checkpoint counts) until it is gone (services/trainer/lifecycle.py).
    # Added after the first release, like the flag above.
    resumed_while_pausing: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    fine_tuned_model: Mapped[str] = mapped_column(String, default="")
    finished_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    estimated_finish: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    trained_tokens: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    error_code: Mapped[str] = mapped_column(String, default="")
    error_message: Mapped[str] = mapped_column(String, default="")
    error_param: Mapped[str] = mapped_column(String, default="")
    result_files: Mapped[list[str]] = mapped_column(JSON, default=list)

    # The worker attempt: set when a worker is launched, cleared when it is gone. Reports
    # naming another attempt are refused.
    attempt_id: Mapped[str | None] = mapped_column(String, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Attempts lost to a crash, a vanished worker or a retryable failure (bounded by the retries setting).
    worker_failures: Mapped[int] = mapped_column(Integer, default=0)
    total_steps: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    current_step: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # The first step reported by the current attempt and when: the pace since then gives estimated_finish.
    pace_start_step: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    pace_start_time: Mapped[float | None] = mapped_column(Float, nullable=True)


class EventRecord(Base):
    """One event of a job's log (a message or metrics at a step)."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_job_seq", "job_id", "seq"),)

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String, unique=True)
    job_id: Mapped[str] = mapped_column(String)
    organization_id: Mapped[str] = mapped_column(String)
    created_at: Mapped[int] = mapped_column(BigInteger)
    level: Mapped[str] = mapped_column(String)  # an EventLevel name
    type: Mapped[str] = mapped_column(String)  # an EventType name
    message: Mapped[str] = mapped_column(String)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class CheckpointRecord(Base):
    """One kept checkpoint of a job: its adapter (servable) and full training state (resumable)."""

    __tablename__ = "checkpoints"
    __table_args__ = (
        UniqueConstraint("job_id", "step_number", name="uq_checkpoints_job_step"),
        Index("ix_checkpoints_job_seq", "job_id", "seq"),
    )

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String, unique=True)
    job_id: Mapped[str] = mapped_column(String)
    organization_id: Mapped[str] = mapped_column(String)
    created_at: Mapped[int] = mapped_column(BigInteger)
    step_number: Mapped[int] = mapped_column(BigInteger)
    epoch: Mapped[int] = mapped_column(BigInteger, default=0)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    model_name: Mapped[str] = mapped_column(String)
    adapter_uri: Mapped[str] = mapped_column(String)
    state_uri: Mapped[str] = mapped_column(String)
    lora_rank: Mapped[int] = mapped_column(Integer, default=0)


class ModelRecord(Base):
    """A registered fine-tuned model or checkpoint: its name and where its adapter is."""

    __tablename__ = "models"
    __table_args__ = (Index("ix_models_organization_seq", "organization_id", "seq"),)

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String, unique=True)
    kind: Mapped[str] = mapped_column(String)  # a ModelKind name
    organization_id: Mapped[str] = mapped_column(String)
    base_model: Mapped[str] = mapped_column(String)
    adapter_uri: Mapped[str] = mapped_column(String)
    job_id: Mapped[str] = mapped_column(String)
    step_number: Mapped[int] = mapped_column(BigInteger, default=0)
    lora_rank: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[int] = mapped_column(BigInteger)
    # Deleted models keep their row (names are never reused) but no longer resolve.
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)


class WebhookEndpointRecord(Base):
    """One of an organization's webhook endpoints (services/trainer/webhooks).

    ``secret`` is the plain ``whsec_`` signing secret: every delivery needs it for its HMAC,
    so it is kept as the trainer keeps its other records (SQLite 0600 in the owner-only data
    directory, or the Postgres database's own access control) and never answered after creation.
    """

    __tablename__ = "webhook_endpoints"
    __table_args__ = (Index("ix_webhook_endpoints_organization_seq", "organization_id", "seq"),)

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String, unique=True)
    organization_id: Mapped[str] = mapped_column(String)
    created_at: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[int] = mapped_column(BigInteger)
    name: Mapped[str] = mapped_column(String)
    url: Mapped[str] = mapped_column(String)
    event_types: Mapped[list[str]] = mapped_column(JSON, default=list)
    secret: Mapped[str] = mapped_column(String)


class WebhookEventRecord(Base):
    """The outbox: one event, written in the transaction of the status change it reports.

    ``fanned_out`` turns true once a delivery row exists for each endpoint of its
    organization that existed when the event happened and subscribes to its type.
    """

    __tablename__ = "webhook_events"
    __table_args__ = (Index("ix_webhook_events_fanned_out", "fanned_out", "seq"),)

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String, unique=True)
    organization_id: Mapped[str] = mapped_column(String)
    created_at: Mapped[int] = mapped_column(BigInteger)
    type: Mapped[str] = mapped_column(String)
    object_id: Mapped[str] = mapped_column(String)
    fanned_out: Mapped[bool] = mapped_column(Boolean, default=False)


class WebhookDeliveryRecord(Base):
    """One event to one endpoint: pending until a 2xx answer (delivered) or the give-up time (failed)."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("event_id", "endpoint_id", name="uq_webhook_deliveries_event_endpoint"),
        Index("ix_webhook_deliveries_due", "state", "next_attempt_at"),
        Index("ix_webhook_deliveries_endpoint_seq", "endpoint_id", "seq"),
    )

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String, unique=True)
    organization_id: Mapped[str] = mapped_column(String)
    endpoint_id: Mapped[str] = mapped_column(String)
    event_id: Mapped[str] = mapped_column(String)
    event_type: Mapped[str] = mapped_column(String)
    object_id: Mapped[str] = mapped_column(String)
    event_created_at: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String)  # pending, delivered, failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[float] = mapped_column(Float)
    # A replica sending this delivery holds it until then; another may take it up afterwards.
    lease_until: Mapped[float | None] = mapped_column(Float, nullable=True)
    last_attempt_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    last_status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str] = mapped_column(String, default="")


class WebhookAttemptRecord(Base):
    """One sending of a delivery: what the endpoint answered (or why nothing), and what happens next."""

    __tablename__ = "webhook_attempts"
    __table_args__ = (Index("ix_webhook_attempts_endpoint_seq", "endpoint_id", "seq"),)

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String, unique=True)
    organization_id: Mapped[str] = mapped_column(String)
    endpoint_id: Mapped[str] = mapped_column(String)
    delivery_id: Mapped[str] = mapped_column(String)
    event_id: Mapped[str] = mapped_column(String)
    event_type: Mapped[str] = mapped_column(String)
    attempted_at: Mapped[int] = mapped_column(BigInteger)
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str] = mapped_column(String, default="")
    state: Mapped[str] = mapped_column(String)  # the delivery's state after this attempt
    next_attempt_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


def database_url(settings: TrainerSettings) -> str:
    """The configured URL, or SQLite in the data directory."""
    return settings.trainer_database_url or sqlite_url(settings.data_dir / "records" / "trainer.db")


class TrainerRecords:
    """The trainer's database: read transactions, and write transactions taken one at a time."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self._write_lock = asyncio.Lock()

    @classmethod
    def open(cls, settings: TrainerSettings) -> TrainerRecords:
        return cls(Database(database_url(settings), Base.metadata))

    async def create_schema(self) -> None:
        await self.database.create_schema()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A transaction for reading only."""
        async with self.database.transaction() as session:
            yield session

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A transaction that may write; committed on success, rolled back on error."""
        async with self._write_lock, self.database.transaction() as session:
            yield session

    async def check(self) -> None:
        """Readiness: the database answers."""
        await self.database.check()

    async def close(self) -> None:
        await self.database.close()


async def job_by_id(
    session: AsyncSession, job_id: str, organization_id: str | None = None
) -> JobRecord | None:
    """The job, or None when it does not exist or (with ``organization_id``) belongs to another organization."""
    query = select(JobRecord).where(JobRecord.id == job_id)
    if organization_id is not None:
        query = query.where(JobRecord.organization_id == organization_id)
    return await first_or_none(session, query)


async def latest_checkpoint(session: AsyncSession, job_id: str) -> CheckpointRecord | None:
    """The job's newest kept checkpoint (highest step), or None."""
    query = (
        select(CheckpointRecord)
        .where(CheckpointRecord.job_id == job_id)
        .order_by(CheckpointRecord.step_number.desc())
    )
    return await first_or_none(session, query)
