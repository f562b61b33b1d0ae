"""The trainer's side of the worker progress contract (WorkerService in worker_service.proto).

A worker is launched for one attempt of one job and reports under its organization.
Every report is checked the same way first: the job must exist in that organization
(else NOT_FOUND) and the report must come from the job's current attempt (else
FAILED_PRECONDITION ``stale_attempt``: the worker was superseded and must stop).
Then the job's status decides:

* running: the report is taken, and the answer says CONTINUE;
* paused, or resumed while its paused worker is still on its way out (see
  :mod:`services.trainer.lifecycle`): the worker is finishing its pause checkpoint; reports
  are taken, and the answer says PAUSE (save a checkpoint, report it, exit);
* cancelled: heartbeats and events are answered with CANCEL and stored nowhere;
  checkpoints and success are refused (FAILED_PRECONDITION), so nothing of a
  cancelled job is registered;
* succeeded or failed: every report is refused.

Any report is also the worker's heartbeat.

Workers hold no object store access: they stream their checkpoints, states and final adapter
through ``UploadCheckpoint`` (each key must lie under the job's output prefix, and only the
current attempt of a running or pausing job may upload) and read a resume state or an initial
adapter back through ``DownloadCheckpoint`` (only the job's own outputs, or the adapter the job
was created to continue from). The trainer streams those bytes to and from the store itself.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterable, AsyncIterator

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.base_models import resolve_base_model
from services.common.database import first_or_none
from services.common.errors import FailedPrecondition, InvalidArgument, TailorError
from services.common.ids import new_id
from services.common.not_found import job_not_found
from services.common.object_store import ObjectStore
from services.common.object_store.base import is_valid_key
from services.common.tenancy import current_organization
from services.trainer.config import TrainerSettings
from services.trainer.conversions import checkpoint_to_proto, job_to_proto, set_fields
from services.trainer.events import WARN, add_event, add_worker_event
from services.trainer.lifecycle import (
    PAUSING,
    RESUMED_WHILE_PAUSING,
    Action,
    allowed,
    apply,
    clear_progress,
    end_attempt_badly,
    mark_failed,
    note_progress,
    refusal,
    resume_point,
    state,
)
from services.trainer.records import (
    CheckpointRecord,
    JobRecord,
    ModelRecord,
    Status,
    TrainerRecords,
    job_by_id,
    latest_checkpoint,
    now,
)
from services.trainer.registry import (
    CHECKPOINT,
    FINE_TUNED,
    checkpoint_model_name,
    fine_tuned_model_name,
    register_model,
)
from services.trainer.scheduler import Scheduler
from services.trainer.storage import delete_prefixes, job_output, output_prefix
from tailor.trainer.v1 import job_pb2
from tailor.trainer.v1 import worker_service_pb2 as worker_pb2

CONTINUE = worker_pb2.WORKER_DIRECTIVE_CONTINUE
CANCEL = worker_pb2.WORKER_DIRECTIVE_CANCEL
PAUSE = worker_pb2.WORKER_DIRECTIVE_PAUSE


class WorkerApi:
    """The WorkerService's logic; the servicer in :mod:`services.trainer.server` only converts."""

    def __init__(
        self, settings: TrainerSettings, records: TrainerRecords, scheduler: Scheduler, store: ObjectStore
    ) -> None:
        self._settings = settings
        self._records = records
        self._scheduler = scheduler
        self._store = store

    async def claim(self, worker: worker_pb2.WorkerIdentity) -> worker_pb2.TrainingPlan:
        """Marks the job RUNNING for this attempt and returns its plan (again, if the claim is repeated)."""
        async with self._records.write() as session:
            job = await self._job_of_attempt(session, worker)
            if not allowed(state(job), Action.CLAIM):
                raise refusal(job, Action.CLAIM)
            try:
                # Not built here (that needs torch): the worker builds a built-in model itself.
                base = resolve_base_model(job.base_model, self._settings, build=False)
            except TailorError as error:
                message = f"The base model `{job.base_model}` is no longer available: {error.message}"
                mark_failed(session, job, code="base_model_unavailable", message=message)
                base = None
            else:
                checkpoint = await latest_checkpoint(session, job.id)
                if job.status == Status.QUEUED:
                    resumed = f" from the checkpoint at step {checkpoint.step_number}" if checkpoint else ""
                    apply(session, job, Action.CLAIM, event=f"Fine-tuning job started{resumed}")
                plan = worker_pb2.TrainingPlan(
                    job=job_to_proto(job),
                    base_model=base.name,
                    base_model_source=base.location,
                    # The effective defaults: the entry's own, else its family's. A family default
                    # unknown here (a built-in not built on this machine, an id not downloaded yet)
                    # is sent as 0: the worker, which reads the model's config.json, decides it.
                    base_learning_rate=(
                        base.lora_learning_rate if base.model_type or base.spec.lora_learning_rate else 0.0
                    ),
                    max_seq_length=base.max_seq_length if base.model_type or base.spec.max_seq_length else 0,
                    output_prefix=output_prefix(job.organization_id, job.id),
                    resume_from_uri=checkpoint.state_uri if checkpoint else "",
                    initial_adapter_uri=job.initial_adapter_uri,
                    heartbeat_interval_s=self._settings.trainer_heartbeat_interval_s,
                )
        if base is None:
            raise refusal(job, Action.CLAIM)  # after the commit: the job stays failed
        return plan

    async def report_started(self, request: worker_pb2.ReportStartedRequest) -> int:
        """Writes the resolved hyperparameters back into the job and notes the total steps."""
        async with self._records.write() as session:
            job = await self._job_of_attempt(session, request.worker)
            directive = _directive(job)
            if directive != CANCEL:
                resolved = set_fields(request.resolved_method.hyperparameters)
                job.hyperparameters = {**job.hyperparameters, **resolved}
                job.total_steps = request.total_steps or None
                clear_progress(job)
        return directive

    async def report_events(self, request: worker_pb2.ReportEventsRequest) -> int:
        """Stores the worker's events and progress (the estimated finish follows the pace so far)."""
        async with self._records.write() as session:
            job = await self._job_of_attempt(session, request.worker)
            directive = _directive(job)
            if directive == CANCEL:
                return directive
            for event in request.events:
                add_worker_event(session, job, event)
            if request.current_step:
                note_progress(job, request.current_step, time.time())
        return directive

    async def report_checkpoint(
        self, request: worker_pb2.ReportCheckpointRequest
    ) -> tuple[job_pb2.Checkpoint, int]:
        """Registers the checkpoint as ``…:ckpt-step-N`` and keeps only the newest few."""
        async with self._records.write() as session:
            job = await self._job_of_attempt(session, request.worker)
            if state(job) not in _TRAINING:  # checkpoints of a pausing worker count
                raise refusal(job, Action.SUCCEED)
            prefix = output_prefix(job.organization_id, job.id)
            adapter_uri = job_output(request.adapter_uri, prefix, "adapter_uri")
            state_uri = job_output(request.state_uri, prefix, "state_uri")
            checkpoint = await self._store_checkpoint(session, job, request, adapter_uri, state_uri)
            stale_prefixes = await self._rotate_checkpoints(session, job)
            answer = checkpoint_to_proto(checkpoint), _directive(job)
        await delete_prefixes(self._store, stale_prefixes)
        return answer

    async def report_succeeded(self, request: worker_pb2.ReportSucceededRequest) -> job_pb2.Job:
        """Registers the fine-tuned model and ends the job as succeeded."""
        async with self._records.write() as session:
            job = await self._job_of_attempt(session, request.worker)
            if not allowed(state(job), Action.SUCCEED):
                raise refusal(job, Action.SUCCEED)
            adapter_uri = job_output(
                request.adapter_uri, output_prefix(job.organization_id, job.id), "adapter_uri"
            )
            name = fine_tuned_model_name(
                job.base_model, job.organization_id, job.suffix, job.model_id_segment
            )
            await _upsert_model(
                session,
                job,
                name=name,
                kind=FINE_TUNED,
                adapter_uri=adapter_uri,
                lora_rank=request.lora_rank or int(job.hyperparameters.get("lora_rank", 0)),
            )
            job.fine_tuned_model = name
            job.trained_tokens = request.trained_tokens
            job.result_files = list(request.result_files)
            add_event(session, job, f"New fine-tuned model created: {name}")
            apply(session, job, Action.SUCCEED, event="The job has successfully completed")
        return job_to_proto(job)

    async def report_failed(self, request: worker_pb2.ReportFailedRequest) -> job_pb2.Job:
        """Ends the attempt: a retryable failure is retried from the last checkpoint while retries last."""
        error = request.error
        async with self._records.write() as session:
            job = await self._job_of_attempt(session, request.worker)
            if job.status in (Status.SUCCEEDED, Status.FAILED):
                raise refusal(job, Action.FAIL)
            if state(job) in (PAUSING, RESUMED_WHILE_PAUSING) and request.retryable:
                # The worker was leaving anyway: the pause (or the resume) stands, and the next
                # attempt starts afresh from the last checkpoint.
                where = await resume_point(session, job)
                message = f"{error.message} {_AFTER_PAUSE[state(job)]} from {where}."
                add_event(session, job, message, level=WARN)
            elif job.status != Status.CANCELLED:
                await end_attempt_badly(
                    session,
                    job,
                    code=error.code or "training_failed",
                    message=error.message or "Training failed.",
                    param=error.param,
                    retryable=request.retryable,
                    retries=self._settings.trainer_worker_retries,
                )
        return job_to_proto(job)

    async def upload_checkpoint(
        self, requests: AsyncIterable[worker_pb2.UploadCheckpointRequest]
    ) -> worker_pb2.UploadCheckpointResponse:
        """Stores one object a worker streams (header, then chunks) under its job's output prefix."""
        messages = aiter(requests)
        first = await anext(messages, None)
        if first is None or first.WhichOneof("payload") != "header":
            raise InvalidArgument("the first message must be the header", param="header")
        header = first.header
        async with self._records.write() as session:
            job = await self._job_of_attempt(session, header.worker)
            if state(job) not in _TRAINING:
                raise refusal(job, Action.SUCCEED)
            prefix = output_prefix(job.organization_id, job.id)
        key = header.key
        if not key.startswith(prefix) or key.endswith("/") or not is_valid_key(key):
            raise InvalidArgument(f"key must be an object key under {prefix}, got {key!r}", param="key")

        async def chunks() -> AsyncIterator[bytes]:
            async for message in messages:
                if message.WhichOneof("payload") != "chunk":
                    raise InvalidArgument("only chunks may follow the header", param="chunk")
                yield message.chunk

        stored = await self._store.put(key, chunks())
        return worker_pb2.UploadCheckpointResponse(key=stored.key, bytes=stored.size, sha256=stored.sha256)

    async def download_checkpoint(
        self, request: worker_pb2.DownloadCheckpointRequest
    ) -> AsyncIterator[worker_pb2.DownloadCheckpointResponse]:
        """Streams every object under a prefix of the job's own outputs or of its initial adapter."""
        async with self._records.write() as session:
            job = await self._job_of_attempt(session, request.worker)
            if state(job) not in _TRAINING:
                raise refusal(job, Action.CLAIM)
            own = output_prefix(job.organization_id, job.id)
            initial = job.initial_adapter_uri
        prefix = request.prefix if request.prefix.endswith("/") else request.prefix + "/"
        initial = initial if not initial or initial.endswith("/") else initial + "/"
        organization = f"orgs/{job.organization_id}/"
        if not (
            (prefix.startswith(own) and prefix != own)
            or (initial and prefix == initial and prefix.startswith(organization))
        ) or not is_valid_key(prefix.rstrip("/")):
            raise InvalidArgument(
                f"prefix must be one of job {job.id}'s checkpoints or its initial adapter, "
                f"got {request.prefix!r}",
                param="prefix",
            )
        async for stored in self._store.list(prefix):
            yield worker_pb2.DownloadCheckpointResponse(path=stored.key.removeprefix(prefix))
            async for chunk in self._store.get(stored.key):
                yield worker_pb2.DownloadCheckpointResponse(chunk=chunk)

    async def _job_of_attempt(self, session: AsyncSession, worker: worker_pb2.WorkerIdentity) -> JobRecord:
        job = await job_by_id(session, worker.job_id, current_organization())
        if job is None:
            raise job_not_found(worker.job_id)
        if job.attempt_id != worker.attempt_id or not worker.attempt_id:
            raise FailedPrecondition(
                f"Attempt {worker.attempt_id!r} is no longer the one training job {job.id}; stop.",
                param="attempt_id",
                code="stale_attempt",
            )
        self._scheduler.heard_from(job.id, worker.attempt_id)
        return job

    async def _store_checkpoint(
        self,
        session: AsyncSession,
        job: JobRecord,
        request: worker_pb2.ReportCheckpointRequest,
        adapter_uri: str,
        state_uri: str,
    ) -> CheckpointRecord:
        """Adds (or, for a repeated step, updates) the checkpoint and its registered model."""
        metrics = set_fields(request.metrics)
        metrics.setdefault("step", request.step_number)
        lora_rank = request.lora_rank or int(job.hyperparameters.get("lora_rank", 0))
        model_name = checkpoint_model_name(
            fine_tuned_model_name(job.base_model, job.organization_id, job.suffix, job.model_id_segment),
            request.step_number,
        )
        query = select(CheckpointRecord).where(
            CheckpointRecord.job_id == job.id, CheckpointRecord.step_number == request.step_number
        )
        checkpoint = await first_or_none(session, query)
        if checkpoint is None:
            checkpoint = CheckpointRecord(
                id=new_id("ftckpt"),
                job_id=job.id,
                organization_id=job.organization_id,
                created_at=now(),
                step_number=request.step_number,
                model_name=model_name,
            )
            session.add(checkpoint)
            add_event(session, job, f"Checkpoint created at step {request.step_number}")
        checkpoint.epoch = request.epoch
        checkpoint.metrics = metrics
        checkpoint.adapter_uri = adapter_uri
        checkpoint.state_uri = state_uri
        checkpoint.lora_rank = lora_rank
        await _upsert_model(
            session,
            job,
            name=model_name,
            kind=CHECKPOINT,
            adapter_uri=adapter_uri,
            lora_rank=lora_rank,
            step_number=request.step_number,
        )
        await session.flush()
        return checkpoint

    async def _rotate_checkpoints(self, session: AsyncSession, job: JobRecord) -> list[str]:
        """Drops all but the newest checkpoints (and their model names); returns their object prefixes to delete."""
        query = (
            select(CheckpointRecord)
            .where(CheckpointRecord.job_id == job.id)
            .order_by(CheckpointRecord.step_number.desc())
        )
        checkpoints = (await session.execute(query)).scalars().all()
        kept = checkpoints[: self._settings.trainer_checkpoints_kept]
        stale = checkpoints[self._settings.trainer_checkpoints_kept :]
        kept_prefixes = [prefix for c in kept for prefix in (c.adapter_uri, c.state_uri)]
        to_delete = []
        for checkpoint in stale:
            model = await first_or_none(
                session, select(ModelRecord).where(ModelRecord.name == checkpoint.model_name)
            )
            if model is not None:
                model.deleted = True
            await session.delete(checkpoint)
            for prefix in (checkpoint.adapter_uri, checkpoint.state_uri):
                # Never delete what a kept checkpoint still points into.
                if not any(k.startswith(prefix) or prefix.startswith(k) for k in kept_prefixes):
                    to_delete.append(prefix)
        return to_delete


# The states in which the job's attempt may be training, or saving its pause checkpoint.
_TRAINING = (Status.RUNNING, PAUSING, RESUMED_WHILE_PAUSING)
_AFTER_PAUSE = {
    PAUSING: "The job stays paused; resuming continues",
    RESUMED_WHILE_PAUSING: "The job continues",
}


def _directive(job: JobRecord) -> int:
    """What the worker should do next, given the job's status; refuses reports for finished jobs."""
    if job.status == Status.CANCELLED:
        return CANCEL
    if state(job) in (PAUSING, RESUMED_WHILE_PAUSING):
        # Resumed or not, a pausing worker finishes its pause: the next attempt continues from it.
        return PAUSE
    if job.status == Status.RUNNING:
        return CONTINUE
    raise refusal(job, Action.CLAIM)


async def _upsert_model(
    session: AsyncSession,
    job: JobRecord,
    *,
    name: str,
    kind: str,
    adapter_uri: str,
    lora_rank: int,
    step_number: int = 0,
) -> None:
    model = await first_or_none(session, select(ModelRecord).where(ModelRecord.name == name))
    if model is None:
        register_model(
            session,
            name=name,
            kind=kind,
            organization_id=job.organization_id,
            base_model=job.base_model,
            adapter_uri=adapter_uri,
            job_id=job.id,
            lora_rank=lora_rank,
            step_number=step_number,
        )
    else:
        # A repeated report (the worker retried the call, or a new attempt redid the step).
        model.adapter_uri = adapter_uri
        model.lora_rank = lora_rank
