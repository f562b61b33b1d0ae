"""Fine-tuning jobs as users see them: create, read, list, cancel, pause, resume; events and checkpoints.

Create checks everything it can before storing anything: the fields and their
ranges (:mod:`services.trainer.job_requests`), the model (a configured base model,
or a fine-tuned model of the same organization to continue training from; a base that is
a Hugging Face id must be in the local hub cache when the deployment is offline), and the
files (:mod:`services.trainer.file_checks`). A file the dataset service has not finished
processing is not refused: the job waits in ``validating_files`` until it is, as on
OpenAI, and fails if it turns out invalid.

Create is safe against the SDK's automatic retries: a request repeating an earlier one's
idempotency key gets that job instead of a second one, as :mod:`services.trainer.idempotency`
decides.

Every read and write is scoped by the caller's organization; another organization's
job answers exactly like a missing one.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.base_models import check_base_model_available, resolve_base_model
from services.common.database import paginate
from services.common.errors import InvalidArgument
from services.common.ids import new_id, new_model_suffix
from services.common.not_found import job_not_found, model_not_found_message
from services.common.tenancy import current_organization
from services.trainer.config import TrainerSettings
from services.trainer.conversions import (
    checkpoint_to_proto,
    event_to_proto,
    job_to_proto,
    message_to_dict,
    set_fields,
)
from services.trainer.dataset_client import DatasetFiles
from services.trainer.events import add_event
from services.trainer.file_checks import check_files
from services.trainer.idempotency import job_answering, job_with_key, release_ended_jobs_key
from services.trainer.job_requests import MAX_SEED, check_request, method_type, request_fingerprint
from services.trainer.lifecycle import RESUMED_WHILE_PAUSING, Action, apply, state
from services.trainer.records import (
    CheckpointRecord,
    EventRecord,
    JobRecord,
    Status,
    TrainerRecords,
    job_by_id,
    now,
)
from services.trainer.registry import FINE_TUNED_PREFIX, ModelRegistry, registered_model
from services.trainer.scheduler import Scheduler
from tailor.trainer.v1 import job_pb2, trainer_service_pb2

MAX_PAGE_SIZE = 100
DEFAULT_JOBS_PAGE = 20
DEFAULT_EVENTS_PAGE = 20
DEFAULT_CHECKPOINTS_PAGE = 10


def page_size(limit: int, default: int) -> int:
    """The page size a request asks for: 0 means the default; 1-100 otherwise."""
    if limit == 0:
        return default
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidArgument(f"limit must be between 1 and {MAX_PAGE_SIZE}.", param="limit")
    return limit


@dataclass(frozen=True)
class StartingPoint:
    """The base model a job trains on and, when it continues a fine-tuned model, that adapter and its rank."""

    base_model: str
    adapter_uri: str = ""
    lora_rank: int | None = None


class JobService:
    """The TrainerService's logic; the servicer in :mod:`services.trainer.server` only converts."""

    def __init__(
        self,
        settings: TrainerSettings,
        records: TrainerRecords,
        registry: ModelRegistry,
        dataset: DatasetFiles,
        scheduler: Scheduler,
    ) -> None:
        self._settings = settings
        self._records = records
        self._registry = registry
        self._dataset = dataset
        self._scheduler = scheduler

    async def create(self, request: trainer_service_pb2.CreateJobRequest) -> job_pb2.Job:
        """Checks and stores a new job in ``validating_files``; the scheduler takes it from there."""
        organization = current_organization()
        fingerprint = request_fingerprint(request)
        key = request.idempotency_key
        if key:
            async with self._records.read() as session:
                earlier = await job_answering(session, organization, request, fingerprint)
            if earlier is not None:
                return job_to_proto(earlier)

        check_request(
            request,
            max_lora_rank=self._settings.max_lora_rank,
            mlflow_allowed_targets=self._settings.trainer_mlflow_allowed_targets,
        )
        method = method_type(request)
        hyperparameters = set_fields(request.method.hyperparameters)
        start = await self._starting_point(request.model, organization, hyperparameters.get("lora_rank"))
        await asyncio.to_thread(self._check_base_model_available, start.base_model)
        if start.lora_rank is not None:
            hyperparameters["lora_rank"] = start.lora_rank
        verdict = await check_files(self._dataset, request.training_file, request.validation_file, method)
        if verdict.problem is not None:
            problem = verdict.problem
            raise InvalidArgument(problem.message, param=problem.param, code=problem.code)

        job = JobRecord(
            id=new_id("ftjob"),
            organization_id=organization,
            created_at=now(),
            model=request.model,
            base_model=start.base_model,
            training_file=request.training_file,
            validation_file=request.validation_file,
            method_type=job_pb2.MethodType.Name(method),
            hyperparameters=hyperparameters,
            suffix=request.suffix,
            seed=request.seed if request.HasField("seed") else secrets.randbelow(MAX_SEED + 1),
            user_metadata=dict(request.metadata),
            integrations=[message_to_dict(integration) for integration in request.integrations],
            priority=request.priority,
            idempotency_key=request.idempotency_key or None,
            request_fingerprint=fingerprint,
            model_id_segment=new_model_suffix(),
            initial_adapter_uri=start.adapter_uri,
            status=Status.VALIDATING_FILES,
            result_files=[],
        )
        try:
            async with self._records.write() as session:
                if key:
                    await release_ended_jobs_key(session, organization, request)
                session.add(job)
                add_event(session, job, f"Created fine-tuning job: {job.id}")
                add_event(session, job, f"Validating training file: {job.training_file}")
                if job.validation_file:
                    add_event(session, job, f"Validating validation file: {job.validation_file}")
        except IntegrityError:
            # The same key was stored by a concurrent retry of this request in the meantime:
            # that job answers both (it had not ended when this one tried to take its key).
            async with self._records.read() as session:
                earlier = await job_with_key(session, organization, key, fingerprint)
            if earlier is None:
                raise
            return job_to_proto(earlier)
        if verdict.processing:
            self._scheduler.wake()
        else:
            self._scheduler.files_checked(job.id)
        return job_to_proto(job)

    def _check_base_model_available(self, name: str) -> None:
        """Refuse (400 naming ``model``) a base that is a hub id this offline deployment has not cached.

        A worker would otherwise fail at its first step; online, the worker downloads it instead.
        """
        spec = self._settings.base_models[name]
        if not (spec.is_builtin or spec.is_local_path):
            check_base_model_available(resolve_base_model(name, self._settings, build=False))

    async def _starting_point(self, name: str, organization: str, requested_rank: object) -> StartingPoint:
        """What training starts from: a base model, or a fine-tuned model of the organization."""
        if self._registry.base_model(name) is not None:
            return StartingPoint(base_model=name)
        if name.startswith(FINE_TUNED_PREFIX):
            async with self._records.read() as session:
                model = await registered_model(session, name, organization)
            if model is not None and self._registry.base_model(model.base_model) is not None:
                if requested_rank is not None and requested_rank != model.lora_rank:
                    raise InvalidArgument(
                        f"hyperparameters.lora_rank must be {model.lora_rank}, the rank of `{name}` "
                        "that training continues from.",
                        param="hyperparameters.lora_rank",
                    )
                return StartingPoint(model.base_model, model.adapter_uri, model.lora_rank)
        available = ", ".join(sorted(self._settings.base_models))
        raise InvalidArgument(
            f"{model_not_found_message(name)} "
            f"Fine-tune a base model ({available}) or one of your fine-tuned models.",
            param="model",
            code="model_not_found",
        )

    async def get(self, job_id: str) -> job_pb2.Job:
        async with self._records.read() as session:
            return job_to_proto(await self._job(session, job_id))

    async def list(self, limit: int, after: str, metadata: dict[str, str]) -> tuple[list[job_pb2.Job], bool]:
        """The organization's jobs, newest first, optionally only those whose metadata has all the pairs."""
        query = select(JobRecord).where(JobRecord.organization_id == current_organization())
        for key, value in metadata.items():
            query = query.where(JobRecord.user_metadata[key].as_string() == value)
        async with self._records.read() as session:
            rows, has_more = await paginate(
                session,
                query,
                seq=JobRecord.seq,
                id_column=JobRecord.id,
                after=after or None,
                limit=page_size(limit, DEFAULT_JOBS_PAGE),
            )
        return [job_to_proto(row) for row in rows], has_more

    async def cancel(self, job_id: str) -> job_pb2.Job:
        """Cancels an unfinished job: its worker (if any) is stopped now and nothing more of it is registered."""
        async with self._records.write() as session:
            job = await self._job(session, job_id)
            apply(session, job, Action.CANCEL, event="Fine-tuning job cancelled")
            has_worker = job.attempt_id is not None
        if has_worker:
            # Whatever it wrote beyond the kept checkpoints is discarded once it is gone.
            self._scheduler.stop_worker(job_id)
        else:
            self._scheduler.discard_outputs(job.id, job.organization_id)
        return job_to_proto(job)

    async def pause(self, job_id: str) -> job_pb2.Job:
        """Pauses an unfinished job; a running worker checkpoints and exits, file validation waits."""
        async with self._records.write() as session:
            job = await self._job(session, job_id)
            # A worker resumed while pausing is still pausing: it gets its pause timeout again.
            was_running = state(job) in (Status.RUNNING, RESUMED_WHILE_PAUSING)
            launched = job.attempt_id is not None
            apply(session, job, Action.PAUSE, event="Fine-tuning job paused")
        if was_running:
            self._scheduler.expect_exit(job_id)
        elif launched:
            # Its worker has not claimed the job yet: nothing to save, so it is simply stopped.
            self._scheduler.stop_worker(job_id)
        return job_to_proto(job)

    async def resume(self, job_id: str) -> job_pb2.Job:
        """Puts a paused job back where it was: in the queue (its next worker continues from the last
        checkpoint), or in validation when it was paused before its files were validated."""
        async with self._records.write() as session:
            job = await self._job(session, job_id)
            # A pausing worker still on its way out keeps the job until it is gone, so its pause
            # checkpoint counts (services/trainer/lifecycle.py); the scheduler then launches the next.
            apply(session, job, Action.RESUME, event="Fine-tuning job resumed")
        self._scheduler.wake()
        return job_to_proto(job)

    async def list_events(self, job_id: str, limit: int, after: str) -> tuple[list[job_pb2.JobEvent], bool]:
        """The job's events, newest first."""
        async with self._records.read() as session:
            job = await self._job(session, job_id)
            rows, has_more = await paginate(
                session,
                select(EventRecord).where(EventRecord.job_id == job.id),
                seq=EventRecord.seq,
                id_column=EventRecord.id,
                after=after or None,
                limit=page_size(limit, DEFAULT_EVENTS_PAGE),
            )
        return [event_to_proto(row) for row in rows], has_more

    async def list_checkpoints(
        self, job_id: str, limit: int, after: str
    ) -> tuple[list[job_pb2.Checkpoint], bool]:
        """The job's kept checkpoints, newest first."""
        async with self._records.read() as session:
            job = await self._job(session, job_id)
            rows, has_more = await paginate(
                session,
                select(CheckpointRecord).where(CheckpointRecord.job_id == job.id),
                seq=CheckpointRecord.seq,
                id_column=CheckpointRecord.id,
                after=after or None,
                limit=page_size(limit, DEFAULT_CHECKPOINTS_PAGE),
            )
        return [checkpoint_to_proto(row) for row in rows], has_more

    async def _job(self, session: AsyncSession, job_id: str) -> JobRecord:
        job = await job_by_id(session, job_id, current_organization())
        if job is None:
            raise job_not_found(job_id)
        return job
