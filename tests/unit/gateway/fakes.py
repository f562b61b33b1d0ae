"""In-memory stand-ins of the dataset, trainer, model registry and inference services.

They speak the real gRPC contracts on a real loopback server with the services' own
lifecycle and interceptor (organization required, domain errors mapped to statuses with
code and param), so the gateway under test cannot tell them from the real services. They
keep just enough behaviour to check what the gateway does with it: per-organization
records, newest-first cursor pages, idempotent job creation, streamed uploads and
downloads, generation that can hang (to observe cancellation) or fail midway.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import grpc

from services.common.errors import (
    FailedPrecondition,
    InvalidArgument,
    PermissionDenied,
    TailorError,
    Unavailable,
)
from services.common.grpc_server import GrpcServer, ServiceRegistration
from services.common.ids import new_id, new_model_suffix
from services.common.not_found import file_not_found, job_not_found, model_not_found
from services.common.settings import CommonSettings
from services.common.tenancy import current_organization
from tailor.dataset.v1 import dataset_service_pb2 as dataset_pb
from tailor.dataset.v1 import dataset_service_pb2_grpc as dataset_grpc
from tailor.inference.v1 import inference_service_pb2 as inference_pb
from tailor.inference.v1 import inference_service_pb2_grpc as inference_grpc
from tailor.trainer.v1 import eval_service_pb2_grpc as eval_grpc
from tailor.trainer.v1 import job_pb2
from tailor.trainer.v1 import model_registry_service_pb2 as registry_pb
from tailor.trainer.v1 import model_registry_service_pb2_grpc as registry_grpc
from tailor.trainer.v1 import trainer_service_pb2 as trainer_pb
from tailor.trainer.v1 import trainer_service_pb2_grpc as trainer_grpc
from tailor.trainer.v1 import webhook_service_pb2_grpc as webhook_grpc
from tests.unit.gateway.fake_evals import FakeEvals
from tests.unit.gateway.fake_webhooks import FakeWebhooks

T = TypeVar("T")


class DataLoss(TailorError):
    status_code = grpc.StatusCode.DATA_LOSS
    default_code = "data_loss"


BASE_MODEL = "tailor-tiny"
SLASHED_BASE_MODEL = "tailor/tiny-2"
DOWNLOAD_CHUNK = 64 * 1024

_clock = itertools.count(1_700_000_000)


def tick() -> int:
    """A strictly increasing Unix time, so that newest-first order is deterministic."""
    return next(_clock)


def page(
    items: Sequence[T], after: str, limit: int, default: int, item_id: Callable[[T], str]
) -> tuple[list[T], bool]:
    """A cursor page of ``items`` (already in listing order) strictly after the id ``after``."""
    ids = [item_id(item) for item in items]
    start = ids.index(after) + 1 if after in ids else (len(items) if after else 0)
    size = limit or default
    return list(items[start : start + size]), start + size < len(items)


class FakeDataset(dataset_grpc.DatasetServiceServicer):
    """Files per organization; validates fine-tune JSONL line by line like the real service."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[str, dataset_pb.File, bytes]] = {}
        self.chunk_sizes: list[int] = []
        self.chunk_received = asyncio.Event()
        self.aborted_uploads = 0

    def add(self, organization: str, filename: str, content: bytes, purpose: int) -> dataset_pb.File:
        """Stores a file as if uploaded (for results files and listings)."""
        record = dataset_pb.File(
            id=new_id("file"),
            organization_id=organization,
            filename=filename,
            bytes=len(content),
            purpose=purpose,
            status=dataset_pb.FILE_STATUS_PROCESSED,
            created_at=tick(),
        )
        self.files[record.id] = (organization, record, content)
        return record

    def _own(self, file_id: str) -> tuple[dataset_pb.File, bytes]:
        entry = self.files.get(file_id)
        if entry is None or entry[0] != current_organization():
            raise file_not_found(file_id)
        return entry[1], entry[2]

    async def UploadFile(self, request_iterator, context):  # type: ignore[no-untyped-def]
        organization = current_organization()
        content = bytearray()
        metadata: dataset_pb.UploadFileMetadata | None = None
        end: dataset_pb.UploadFileEnd | None = None
        try:
            async for message in request_iterator:
                if message.HasField("metadata"):
                    metadata = message.metadata
                elif message.HasField("end"):
                    end = message.end
                else:
                    self.chunk_sizes.append(len(message.chunk))
                    self.chunk_received.set()
                    content += message.chunk
            await asyncio.sleep(0.01)  # the real service's object store write
        except asyncio.CancelledError:
            self.aborted_uploads += 1
            raise
        # a cancelled stream looks like an ordinary end here: only `end` says the upload is complete
        if metadata is None or end is None:
            self.aborted_uploads += 1
            raise InvalidArgument("an upload is metadata, chunks, then end", param="end")
        if end.sha256 and end.sha256 != hashlib.sha256(content).hexdigest():
            raise DataLoss("the upload's bytes do not match its SHA-256")
        record = dataset_pb.File(
            id=new_id("file"),
            organization_id=organization,
            filename=metadata.filename,
            bytes=len(content),
            purpose=metadata.purpose,
            status=dataset_pb.FILE_STATUS_PROCESSED,
            created_at=tick(),
        )
        for expiry in (metadata, end):  # the end's: a form field that followed the file
            if expiry.HasField("expires_after_seconds"):
                record.expires_at = record.created_at + expiry.expires_after_seconds
        if metadata.purpose == dataset_pb.FILE_PURPOSE_FINE_TUNE:
            problems = _jsonl_problems(bytes(content))
            if problems:
                record.status = dataset_pb.FILE_STATUS_ERROR
                record.problems.extend(problems)
                first = problems[0]
                record.status_details = (
                    f"{len(problems)} problem(s); first: line {first.line}: {first.message}"
                )
            else:
                record.statistics.examples = sum(1 for line in bytes(content).splitlines() if line.strip())
        self.files[record.id] = (organization, record, bytes(content))
        return dataset_pb.UploadFileResponse(file=record)

    async def GetFile(self, request, context):  # type: ignore[no-untyped-def]
        return dataset_pb.GetFileResponse(file=self._own(request.file_id)[0])

    async def ListFiles(self, request, context):  # type: ignore[no-untyped-def]
        organization = current_organization()
        mine = [r for org, r, _ in self.files.values() if org == organization]
        if request.purpose:
            mine = [r for r in mine if r.purpose == request.purpose]
        mine.sort(key=lambda r: r.created_at, reverse=request.order != dataset_pb.SORT_ORDER_ASCENDING)
        files, has_more = page(mine, request.after, request.limit, 10000, lambda r: r.id)
        return dataset_pb.ListFilesResponse(files=files, has_more=has_more)

    async def DeleteFile(self, request, context):  # type: ignore[no-untyped-def]
        self._own(request.file_id)
        del self.files[request.file_id]
        return dataset_pb.DeleteFileResponse(file_id=request.file_id, deleted=True)

    async def DownloadFile(self, request, context):  # type: ignore[no-untyped-def]
        record, content = self._own(request.file_id)
        yield dataset_pb.DownloadFileResponse(file=record)
        for start in range(0, len(content), DOWNLOAD_CHUNK):
            yield dataset_pb.DownloadFileResponse(chunk=content[start : start + DOWNLOAD_CHUNK])


def _jsonl_problems(content: bytes) -> list[dataset_pb.ValidationProblem]:
    problems = []
    for number, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            json.loads(line)
        except ValueError as error:
            problems.append(
                dataset_pb.ValidationProblem(
                    line=number, code="invalid_json", message=f"invalid JSON: {error}"
                )
            )
    return problems


class FakeRegistry(registry_grpc.ModelRegistryServiceServicer):
    """Base models for everyone; fine-tuned models and checkpoints per organization."""

    def __init__(self) -> None:
        self.base = [
            registry_pb.Model(
                id=name, kind=registry_pb.MODEL_KIND_BASE, base_model=name, owned_by="system", created=1
            )
            for name in (BASE_MODEL, SLASHED_BASE_MODEL)
        ]
        self.registered: dict[str, registry_pb.Model] = {}
        self.deleted: set[str] = set()

    def register(self, model: registry_pb.Model) -> None:
        self.registered[model.id] = model

    def _find(self, name: str) -> registry_pb.Model:
        for model in self.base:
            if model.id == name:
                return model
        model = self.registered.get(name)
        if model is None or name in self.deleted or model.owned_by != current_organization():
            raise model_not_found(name)
        return model

    async def ResolveModel(self, request, context):  # type: ignore[no-untyped-def]
        return registry_pb.ResolveModelResponse(model=self._find(request.model))

    async def ListModels(self, request, context):  # type: ignore[no-untyped-def]
        organization = current_organization()
        mine = [
            m for m in self.registered.values() if m.owned_by == organization and m.id not in self.deleted
        ]
        mine.sort(key=lambda m: m.created, reverse=True)
        return registry_pb.ListModelsResponse(models=[*self.base, *mine])

    async def DeleteModel(self, request, context):  # type: ignore[no-untyped-def]
        model = self._find(request.model)
        if model.kind == registry_pb.MODEL_KIND_BASE:
            raise PermissionDenied("Base models cannot be deleted.", param="model")
        self.deleted.add(model.id)
        return registry_pb.DeleteModelResponse(model=model.id, deleted=True)


class FakeTrainer(trainer_grpc.TrainerServiceServicer):
    """Jobs per organization, created idempotently; tests move them along with :meth:`succeed`."""

    def __init__(self, dataset: FakeDataset, registry: FakeRegistry) -> None:
        self.dataset = dataset
        self.registry = registry
        self.jobs: dict[str, job_pb2.Job] = {}
        self.events: dict[str, list[job_pb2.JobEvent]] = {}
        self.checkpoints: dict[str, list[job_pb2.Checkpoint]] = {}
        self.by_key: dict[tuple[str, str], str] = {}
        self.requests: list[trainer_pb.CreateJobRequest] = []

    def _own(self, job_id: str) -> job_pb2.Job:
        job = self.jobs.get(job_id)
        if job is None or job.organization_id != current_organization():
            raise job_not_found(job_id)
        return job

    def event(self, job: job_pb2.Job, message: str, metrics: job_pb2.Metrics | None = None) -> None:
        event = job_pb2.JobEvent(
            id=new_id("ftevent"),
            job_id=job.id,
            created_at=tick(),
            level=job_pb2.EVENT_LEVEL_INFO,
            message=message,
        )
        if metrics is not None:
            event.type = job_pb2.EVENT_TYPE_METRICS
            event.metrics.CopyFrom(metrics)
        else:
            event.type = job_pb2.EVENT_TYPE_MESSAGE
        self.events[job.id].insert(0, event)

    def succeed(self, job_id: str, *, checkpoints: int = 2) -> job_pb2.Job:
        """Finishes a job as the trainer would: model and checkpoints registered, results file written."""
        job = self.jobs[job_id]
        name = f"ft:{job.base_model}:{job.organization_id}:{job.suffix}:{new_model_suffix()}"
        job.status = job_pb2.JOB_STATUS_SUCCEEDED
        job.fine_tuned_model = name
        job.finished_at = tick()
        job.trained_tokens = 1234
        job.method.hyperparameters.n_epochs = job.method.hyperparameters.n_epochs or 3
        results = self.dataset.add(
            job.organization_id,
            "step_metrics.csv",
            b"step,train_loss\n1,0.5\n",
            dataset_pb.FILE_PURPOSE_FINE_TUNE_RESULTS,
        )
        job.result_files.append(results.id)
        for step in range(1, checkpoints + 1):
            metrics = job_pb2.Metrics(step=step * 10, train_loss=1.0 / step, total_steps=checkpoints * 10)
            self.event(job, f"Step {step * 10}/{checkpoints * 10}: training loss={1.0 / step:.2f}", metrics)
            checkpoint = job_pb2.Checkpoint(
                id=new_id("ftckpt"),
                job_id=job.id,
                created_at=tick(),
                fine_tuned_model_checkpoint=f"{name}:ckpt-step-{step * 10}",
                step_number=step * 10,
                metrics=metrics,
            )
            self.checkpoints[job.id].insert(0, checkpoint)
            self.registry.register(
                self._model(job, checkpoint.fine_tuned_model_checkpoint, registry_pb.MODEL_KIND_CHECKPOINT)
            )
        self.registry.register(self._model(job, name, registry_pb.MODEL_KIND_FINE_TUNED))
        self.event(job, f"New fine-tuned model created: {name}")
        self.event(job, "The job has successfully completed")
        return job

    @staticmethod
    def _model(job: job_pb2.Job, name: str, kind: int) -> registry_pb.Model:
        return registry_pb.Model(
            id=name,
            kind=kind,
            base_model=job.base_model,
            owned_by=job.organization_id,
            created=tick(),
            adapter_uri=f"orgs/{job.organization_id}/adapters/{name}",
            job_id=job.id,
            lora_rank=16,
        )

    async def CreateJob(self, request, context):  # type: ignore[no-untyped-def]
        organization = current_organization()
        self.requests.append(request)
        if request.idempotency_key and (organization, request.idempotency_key) in self.by_key:
            return trainer_pb.CreateJobResponse(
                job=self.jobs[self.by_key[organization, request.idempotency_key]]
            )
        if request.model not in (BASE_MODEL, SLASHED_BASE_MODEL):
            raise InvalidArgument(f"Model {request.model} is not available for fine-tuning.", param="model")
        entry = self.dataset.files.get(request.training_file)
        if entry is None or entry[0] != organization:
            raise InvalidArgument(
                f"The training file {request.training_file} does not exist.",
                param="training_file",
                code="invalid_training_file",
            )
        if entry[1].status == dataset_pb.FILE_STATUS_ERROR:
            raise InvalidArgument(
                f"The training file {request.training_file} is invalid: {entry[1].status_details}",
                param="training_file",
                code="invalid_training_file",
            )
        job = job_pb2.Job(
            id=new_id("ftjob"),
            organization_id=organization,
            model=request.model,
            base_model=request.model,
            training_file=request.training_file,
            validation_file=request.validation_file,
            method=request.method,
            status=job_pb2.JOB_STATUS_VALIDATING_FILES,
            created_at=tick(),
            seed=request.seed if request.HasField("seed") else 42,
            suffix=request.suffix,
            metadata=request.metadata,
            integrations=request.integrations,
        )
        if job.method.type == job_pb2.METHOD_TYPE_UNSPECIFIED:
            job.method.type = job_pb2.METHOD_TYPE_SUPERVISED
        self.jobs[job.id] = job
        self.events[job.id] = []
        self.checkpoints[job.id] = []
        self.event(job, f"Created fine-tuning job: {job.id}")
        if request.idempotency_key:
            self.by_key[organization, request.idempotency_key] = job.id
        return trainer_pb.CreateJobResponse(job=job)

    async def GetJob(self, request, context):  # type: ignore[no-untyped-def]
        return trainer_pb.GetJobResponse(job=self._own(request.job_id))

    async def ListJobs(self, request, context):  # type: ignore[no-untyped-def]
        organization = current_organization()
        mine = [j for j in self.jobs.values() if j.organization_id == organization]
        mine = [j for j in mine if all(j.metadata.get(k) == v for k, v in request.metadata.items())]
        mine.sort(key=lambda j: j.created_at, reverse=True)
        jobs, has_more = page(mine, request.after, request.limit, 20, lambda j: j.id)
        return trainer_pb.ListJobsResponse(jobs=jobs, has_more=has_more)

    async def CancelJob(self, request, context):  # type: ignore[no-untyped-def]
        job = self._own(request.job_id)
        if job.status in (
            job_pb2.JOB_STATUS_SUCCEEDED,
            job_pb2.JOB_STATUS_FAILED,
            job_pb2.JOB_STATUS_CANCELLED,
        ):
            raise FailedPrecondition(
                f"Job {job.id} has already finished and cannot be cancelled.",
                param="job_id",
                code="invalid_state",
            )
        job.status = job_pb2.JOB_STATUS_CANCELLED
        job.finished_at = tick()
        return trainer_pb.CancelJobResponse(job=job)

    async def PauseJob(self, request, context):  # type: ignore[no-untyped-def]
        job = self._own(request.job_id)
        job.status = job_pb2.JOB_STATUS_PAUSED
        return trainer_pb.PauseJobResponse(job=job)

    async def ResumeJob(self, request, context):  # type: ignore[no-untyped-def]
        job = self._own(request.job_id)
        job.status = job_pb2.JOB_STATUS_QUEUED
        return trainer_pb.ResumeJobResponse(job=job)

    async def ListJobEvents(self, request, context):  # type: ignore[no-untyped-def]
        self._own(request.job_id)
        events, has_more = page(self.events[request.job_id], request.after, request.limit, 20, lambda e: e.id)
        return trainer_pb.ListJobEventsResponse(events=events, has_more=has_more)

    async def ListJobCheckpoints(self, request, context):  # type: ignore[no-untyped-def]
        self._own(request.job_id)
        checkpoints, has_more = page(
            self.checkpoints[request.job_id], request.after, request.limit, 10, lambda c: c.id
        )
        return trainer_pb.ListJobCheckpointsResponse(checkpoints=checkpoints, has_more=has_more)


@dataclass
class FakeInference(inference_grpc.InferenceServiceServicer):
    """Streams a canned reply, word by word, for each choice.

    ``mode``: ``reply`` (normal), ``hang`` (one delta, then waits until cancelled),
    ``fail_midway`` (one delta, then UNAVAILABLE), ``fail_first`` (UNAVAILABLE at once).
    ``script``, when set, is streamed as is instead of the reply (then usage): the responses
    of a test that needs exact deltas (tool calls, finish reasons).
    """

    reply: str = "Ahoy from Tailor"
    mode: str = "reply"
    base_model: str = BASE_MODEL  # what GetReplicaInfo says this replica serves
    delay_s: float = 0.0
    script: list[inference_pb.GenerateCompletionResponse] | None = None
    requests: list[inference_pb.GenerateCompletionRequest] = field(default_factory=list)
    unloaded: list[str] = field(default_factory=list)
    started: asyncio.Event = field(default_factory=asyncio.Event)
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)

    async def GenerateCompletion(self, request, context):  # type: ignore[no-untyped-def]
        self.requests.append(request)
        self.started.set()
        if self.mode == "fail_first":
            raise Unavailable("the engine is restarting")
        if self.script is not None:
            for response in self.script:
                yield response
            yield inference_pb.GenerateCompletionResponse(
                usage=inference_pb.Usage(prompt_tokens=7, completion_tokens=len(self.script))
            )
            return
        choices = request.sampling.n if request.sampling.HasField("n") else 1
        words = self.reply.split(" ")
        try:
            for position, word in enumerate(words):
                text = word if position == 0 else " " + word
                last = position == len(words) - 1
                yield inference_pb.GenerateCompletionResponse(
                    deltas=[
                        inference_pb.ChoiceDelta(
                            index=index,
                            text=text,
                            finish_reason=inference_pb.FINISH_REASON_STOP if last else 0,
                        )
                        for index in range(choices)
                    ]
                )
                if self.mode == "hang":
                    await asyncio.Event().wait()
                if self.mode == "fail_midway":
                    raise Unavailable("the replica went away")
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
            yield inference_pb.GenerateCompletionResponse(
                usage=inference_pb.Usage(prompt_tokens=7, completion_tokens=len(words) * choices)
            )
        except asyncio.CancelledError:
            self.cancelled.set()
            raise

    async def UnloadAdapter(self, request, context):  # type: ignore[no-untyped-def]
        self.unloaded.append(request.name)
        return inference_pb.UnloadAdapterResponse(unloaded=True)

    async def GetReplicaInfo(self, request, context):  # type: ignore[no-untyped-def]
        return inference_pb.GetReplicaInfoResponse(base_model=self.base_model, engine="hf")


@dataclass
class FakeServices:
    """All four fakes on one loopback gRPC server (every address of the gateway points at it)."""

    dataset: FakeDataset
    registry: FakeRegistry
    trainer: FakeTrainer
    inference: FakeInference
    server: GrpcServer
    port: int
    evals: FakeEvals

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


async def start_fake_services(settings: CommonSettings) -> FakeServices:
    dataset = FakeDataset()
    registry = FakeRegistry()
    trainer = FakeTrainer(dataset, registry)
    inference = FakeInference()
    evals = FakeEvals(dataset.files, registry)
    registrations = [
        ServiceRegistration(
            "tailor.dataset.v1.DatasetService", dataset_grpc.add_DatasetServiceServicer_to_server, dataset
        ),
        ServiceRegistration(
            "tailor.trainer.v1.ModelRegistryService",
            registry_grpc.add_ModelRegistryServiceServicer_to_server,
            registry,
        ),
        ServiceRegistration(
            "tailor.trainer.v1.TrainerService", trainer_grpc.add_TrainerServiceServicer_to_server, trainer
        ),
        ServiceRegistration(
            "tailor.inference.v1.InferenceService",
            inference_grpc.add_InferenceServiceServicer_to_server,
            inference,
        ),
        ServiceRegistration(
            "tailor.trainer.v1.WebhookService",
            webhook_grpc.add_WebhookServiceServicer_to_server,
            FakeWebhooks(),
        ),
        ServiceRegistration(
            "tailor.trainer.v1.EvalService", eval_grpc.add_EvalServiceServicer_to_server, evals
        ),
    ]
    server = GrpcServer(settings, "127.0.0.1:0", registrations)
    port = await server.start()
    return FakeServices(dataset, registry, trainer, inference, server, port, evals)
