"""What the trainer's integration tests drive: a stand-in dataset service, the trainer, a client.

:class:`FakeDataset` serves the real DatasetService contract from memory: GetFile
answers the records a test put there (per organization, so foreign files read as
missing), and UploadFile takes the results CSV workers upload. The trainer itself is
the real one, on loopback, with its own gRPC server, records and executor; only the
worker command is a test's choice (the fake worker by default).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import grpc

import tailor.trainer.v1.model_registry_service_pb2 as registry_pb2
import tailor.trainer.v1.model_registry_service_pb2_grpc as registry_grpc
import tailor.trainer.v1.trainer_service_pb2 as trainer_pb2
import tailor.trainer.v1.trainer_service_pb2_grpc as trainer_grpc
import tailor.trainer.v1.worker_service_pb2 as worker_pb2
import tailor.trainer.v1.worker_service_pb2_grpc as worker_grpc
from services.common.errors import NotFound
from services.common.grpc_client import RpcError, open_channel, rpc_error
from services.common.grpc_server import GrpcServer, ServiceRegistration
from services.common.settings import CommonSettings
from services.common.tenancy import call_context, current_organization
from services.trainer.config import TrainerSettings
from services.trainer.executors import Executor, WorkerLaunch, WorkerStatus
from services.trainer.runtime import TrainerRuntime
from services.trainer.server import TrainerServer
from tailor.dataset.v1 import dataset_service_pb2 as dataset_pb2
from tailor.dataset.v1 import dataset_service_pb2_grpc as dataset_grpc
from tailor.trainer.v1 import job_pb2
from tests.support.internal_auth import bearer, worker_token

FAKE_WORKER_COMMAND = "python -m tests.support.fake_worker"
FINISHED = (job_pb2.JOB_STATUS_SUCCEEDED, job_pb2.JOB_STATUS_FAILED, job_pb2.JOB_STATUS_CANCELLED)
T = TypeVar("T")
_file_numbers = itertools.count()


class FakeDataset(dataset_grpc.DatasetServiceServicer):
    """The dataset service's contract, served from memory."""

    def __init__(self) -> None:
        self.files: dict[tuple[str, str], dataset_pb2.File] = {}
        self.contents: dict[str, bytes] = {}
        # Every GetFile asked, by file id: what the trainer looked up and how often.
        self.lookups: list[str] = []
        # While set (hold_answers), GetFile answers only once it is released.
        self._answers_held: asyncio.Event | None = None

    def hold_answers(self) -> asyncio.Event:
        """From now on GetFile waits before answering, until the returned event is set.

        This holds a file check of the trainer in flight, so that a test can act in between.
        """
        self._answers_held = asyncio.Event()
        return self._answers_held

    def add_file(
        self,
        organization: str,
        *,
        examples: int = 20,
        example_format: int = dataset_pb2.EXAMPLE_FORMAT_CHAT,
        status: int = dataset_pb2.FILE_STATUS_PROCESSED,
        purpose: int = dataset_pb2.FILE_PURPOSE_FINE_TUNE,
    ) -> str:
        """Puts a file record in place and returns its id."""
        file_id = f"file-test{next(_file_numbers)}"
        processed = status == dataset_pb2.FILE_STATUS_PROCESSED
        self.contents[file_id] = example_lines(example_format, examples)
        self.files[(organization, file_id)] = dataset_pb2.File(
            id=file_id,
            organization_id=organization,
            filename="train.jsonl",
            purpose=purpose,
            status=status,
            status_details="line 3: invalid JSON" if status == dataset_pb2.FILE_STATUS_ERROR else "",
            statistics=dataset_pb2.FileStatistics(format=example_format, examples=examples)
            if processed
            else None,
        )
        return file_id

    def finish_processing(self, organization: str, file_id: str, *, examples: int = 20) -> None:
        """Turns an uploaded file into a processed chat file, as the dataset service would."""
        file = self.files[(organization, file_id)]
        file.status = dataset_pb2.FILE_STATUS_PROCESSED
        file.statistics.CopyFrom(
            dataset_pb2.FileStatistics(format=dataset_pb2.EXAMPLE_FORMAT_CHAT, examples=examples)
        )

    async def GetFile(self, request: dataset_pb2.GetFileRequest, context: Any) -> dataset_pb2.GetFileResponse:
        self.lookups.append(request.file_id)
        if self._answers_held is not None:
            await self._answers_held.wait()
        file = self.files.get((current_organization(), request.file_id))
        if file is None:
            raise NotFound(f"No such file: {request.file_id}", param="file_id", code="file_not_found")
        return dataset_pb2.GetFileResponse(file=file)

    async def UploadFile(self, request_iterator: Any, context: Any) -> dataset_pb2.UploadFileResponse:
        metadata = None
        chunks = []
        async for message in request_iterator:
            if message.HasField("metadata"):
                metadata = message.metadata
            else:
                chunks.append(message.chunk)
        file_id = self.add_file(current_organization(), purpose=metadata.purpose if metadata else 0)
        self.contents[file_id] = b"".join(chunks)
        return dataset_pb2.UploadFileResponse(file=self.files[(current_organization(), file_id)])

    async def DownloadFile(
        self, request: dataset_pb2.DownloadFileRequest, context: Any
    ) -> AsyncIterator[dataset_pb2.DownloadFileResponse]:
        file = (await self.GetFile(dataset_pb2.GetFileRequest(file_id=request.file_id), context)).file
        yield dataset_pb2.DownloadFileResponse(file=file)
        yield dataset_pb2.DownloadFileResponse(chunk=self.contents[file.id])


def example_lines(example_format: int, count: int) -> bytes:
    """``count`` JSONL examples of the format, for workers that really read the file."""
    lines = []
    for i in range(count):
        question, answer = f"What is {i} plus {i}?", f"Arr, {2 * i}!"
        if example_format == dataset_pb2.EXAMPLE_FORMAT_PROMPT_COMPLETION:
            example: dict[str, Any] = {"prompt": question, "completion": answer}
        elif example_format == dataset_pb2.EXAMPLE_FORMAT_PREFERENCE:
            example = {
                "input": {"messages": [{"role": "user", "content": question}]},
                "preferred_output": [{"role": "assistant", "content": answer}],
                "non_preferred_output": [{"role": "assistant", "content": f"{2 * i}."}],
            }
        else:
            example = {
                "messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
            }
        lines.append(json.dumps(example))
    return ("\n".join(lines) + "\n").encode()


@contextlib.asynccontextmanager
async def dataset_server(data_dir: Path) -> AsyncIterator[tuple[FakeDataset, str]]:
    """Serves a FakeDataset on loopback; yields it and its address."""
    servicer = FakeDataset()
    name = dataset_pb2.DESCRIPTOR.services_by_name["DatasetService"].full_name
    server = GrpcServer(
        CommonSettings(data_dir=data_dir),
        "127.0.0.1:0",
        [ServiceRegistration(name, dataset_grpc.add_DatasetServiceServicer_to_server, servicer)],
    )
    port = await server.start()
    try:
        yield servicer, f"127.0.0.1:{port}"
    finally:
        await server.stop()


def trainer_settings(
    data_dir: Path, dataset_addr: str, worker_command: str, **overrides: Any
) -> TrainerSettings:
    """Trainer settings for tests: fast scheduling, short heartbeats, a free port."""
    values: dict[str, Any] = dict(
        data_dir=data_dir,
        dataset_addr=dataset_addr,
        trainer_listen="127.0.0.1:0",
        trainer_worker_command=worker_command,
        trainer_scheduler_interval_s=0.1,
        trainer_heartbeat_interval_s=1,
        trainer_heartbeat_timeout_s=3.0,
        trainer_worker_start_timeout_s=30.0,
        trainer_worker_stop_grace_s=2.0,
        trainer_max_concurrent_jobs=2,
        rpc_timeout_s=10.0,
        grpc_shutdown_grace_s=1.0,
        grpc_reflection=False,
    )
    values.update(overrides)
    return TrainerSettings(**values)


class TrainerClient:
    """The trainer's three services, called as one organization or another."""

    def __init__(self, channel: grpc.aio.Channel, address: str = "") -> None:
        self.address = address  # host:port, for other clients (a gateway) to reach the same trainer
        self.jobs = trainer_grpc.TrainerServiceStub(channel)
        self.models = registry_grpc.ModelRegistryServiceStub(channel)
        self.workers = worker_grpc.WorkerServiceStub(channel)

    async def create(self, organization: str, **fields: Any) -> job_pb2.Job:
        """CreateJob with ``model`` tailor-tiny unless given."""
        fields.setdefault("model", "tailor-tiny")
        with call_context(organization, None):
            response = await self.jobs.CreateJob(trainer_pb2.CreateJobRequest(**fields))
        return response.job

    async def job(self, organization: str, job_id: str) -> job_pb2.Job:
        with call_context(organization, None):
            return (await self.jobs.GetJob(trainer_pb2.GetJobRequest(job_id=job_id))).job

    async def wait_for(
        self, organization: str, job_id: str, *statuses: int, timeout: float = 30.0
    ) -> job_pb2.Job:
        """Polls the job until it reaches one of ``statuses``; fails on another terminal status or a timeout."""

        async def reached() -> job_pb2.Job | None:
            job = await self.job(organization, job_id)
            if job.status in statuses:
                return job
            assert job.status not in FINISHED, f"job ended {job_pb2.JobStatus.Name(job.status)}: {job.error}"
            return None

        return await eventually(reached, timeout=timeout, what=f"{job_id} to reach {statuses}")

    async def events(self, organization: str, job_id: str) -> list[job_pb2.JobEvent]:
        """All the job's events, newest first, page by page."""
        events: list[job_pb2.JobEvent] = []
        after = ""
        with call_context(organization, None):
            while True:
                page = await self.jobs.ListJobEvents(
                    trainer_pb2.ListJobEventsRequest(job_id=job_id, limit=100, after=after)
                )
                events += page.events
                if not page.has_more:
                    return events
                after = page.events[-1].id

    async def messages(self, organization: str, job_id: str) -> list[str]:
        """The job's event messages, oldest first (as scripts print them after reversing)."""
        return [event.message for event in reversed(await self.events(organization, job_id))]

    async def checkpoints(self, organization: str, job_id: str) -> list[job_pb2.Checkpoint]:
        with call_context(organization, None):
            page = await self.jobs.ListJobCheckpoints(
                trainer_pb2.ListJobCheckpointsRequest(job_id=job_id, limit=100)
            )
        return list(page.checkpoints)

    async def resolve(self, organization: str, model: str) -> registry_pb2.Model:
        with call_context(organization, None):
            return (await self.models.ResolveModel(registry_pb2.ResolveModelRequest(model=model))).model


class RecordingExecutor(Executor):
    """An executor that starts nothing: tests play the worker by calling WorkerService themselves.

    A launched "worker" runs until the test ends it (:meth:`exit`) or the trainer stops it.
    """

    def __init__(self) -> None:
        self.launches: list[WorkerLaunch] = []
        self.environments: list[dict[str, str]] = []
        self.running: set[str] = set()
        self.stopped: list[str] = []

    async def launch(self, launch: WorkerLaunch, environment: dict[str, str]) -> None:
        self.launches.append(launch)
        self.environments.append(environment)
        self.running.add(launch.attempt_id)

    async def status(self, launch: WorkerLaunch) -> WorkerStatus:
        if launch.attempt_id in self.running:
            return WorkerStatus(running=True)
        return WorkerStatus(running=False, exit_code=0, detail="the test worker exited")

    async def stop(self, launch: WorkerLaunch) -> None:
        self.stopped.append(launch.attempt_id)
        self.running.discard(launch.attempt_id)

    async def release(self, launch: WorkerLaunch) -> None:
        pass

    async def close(self) -> None:
        self.running.clear()

    def exit(self, attempt_id: str) -> None:
        """The worker process of this attempt ends."""
        self.running.discard(attempt_id)

    def attempt_of(self, job_id: str) -> worker_pb2.WorkerIdentity:
        """The identity of the job's latest launched attempt."""
        launch = [launch for launch in self.launches if launch.job_id == job_id][-1]
        return worker_pb2.WorkerIdentity(job_id=job_id, attempt_id=launch.attempt_id)

    async def launched(self, job_id: str, count: int = 1, timeout: float = 10.0) -> worker_pb2.WorkerIdentity:
        """Waits until the job has been launched ``count`` times; returns the latest attempt."""

        async def enough() -> worker_pb2.WorkerIdentity | None:
            if sum(launch.job_id == job_id for launch in self.launches) >= count:
                return self.attempt_of(job_id)
            return None

        return await eventually(enough, timeout=timeout, what=f"{job_id} to be launched {count} time(s)")


class PlayedWorker:
    """Calls WorkerService as the worker of one attempt, with a worker token for that attempt.

    The token names the job, attempt and organization the test plays (as the trainer's would
    for a real launch), so a played stale or foreign worker reaches the trainer's own checks.
    """

    def __init__(
        self, trainer: TrainerClient, identity: worker_pb2.WorkerIdentity, organization: str
    ) -> None:
        self.identity = identity
        self.organization = organization
        self.stub = _WithMetadata(
            trainer.workers, bearer(worker_token(organization, identity.job_id, identity.attempt_id, []))
        )

    async def claim(self) -> worker_pb2.TrainingPlan:
        with call_context(self.organization, None):
            return (await self.stub.ClaimJob(worker_pb2.ClaimJobRequest(worker=self.identity))).plan

    async def started(self, total_steps: int = 6, **hyperparameters: float) -> int:
        method = job_pb2.Method(
            type=job_pb2.METHOD_TYPE_SUPERVISED, hyperparameters=job_pb2.Hyperparameters(**hyperparameters)
        )
        request = worker_pb2.ReportStartedRequest(
            worker=self.identity, resolved_method=method, total_steps=total_steps
        )
        with call_context(self.organization, None):
            return (await self.stub.ReportStarted(request)).directive

    async def step(self, step: int, message: str = "") -> int:
        event = worker_pb2.WorkerEvent(
            type=job_pb2.EVENT_TYPE_METRICS,
            message=message,
            metrics=job_pb2.Metrics(step=step, total_steps=6, train_loss=1.0 / step),
        )
        request = worker_pb2.ReportEventsRequest(worker=self.identity, events=[event], current_step=step)
        with call_context(self.organization, None):
            return (await self.stub.ReportEvents(request)).directive

    async def heartbeat(self) -> int:
        """A report with nothing in it: only the directive comes back (or a refusal)."""
        request = worker_pb2.ReportEventsRequest(worker=self.identity)
        with call_context(self.organization, None):
            return (await self.stub.ReportEvents(request)).directive

    async def checkpoint(
        self, plan: worker_pb2.TrainingPlan, step: int
    ) -> worker_pb2.ReportCheckpointResponse:
        prefix = f"{plan.output_prefix}checkpoints/step-{step}/"
        request = worker_pb2.ReportCheckpointRequest(
            worker=self.identity,
            step_number=step,
            epoch=1,
            adapter_uri=prefix + "adapter",
            state_uri=prefix + "state",
            metrics=job_pb2.Metrics(train_loss=0.5),
            lora_rank=8,
        )
        with call_context(self.organization, None):
            return await self.stub.ReportCheckpoint(request)

    async def succeeded(self, plan: worker_pb2.TrainingPlan) -> job_pb2.Job:
        request = worker_pb2.ReportSucceededRequest(
            worker=self.identity,
            adapter_uri=plan.output_prefix + "adapter/",
            trained_tokens=1234,
            result_files=["file-results"],
            lora_rank=8,
        )
        with call_context(self.organization, None):
            return (await self.stub.ReportSucceeded(request)).job

    async def failed(self, code: str, *, retryable: bool, param: str = "") -> job_pb2.Job:
        error = job_pb2.JobError(code=code, message=f"Training failed: {code}.", param=param)
        request = worker_pb2.ReportFailedRequest(worker=self.identity, error=error, retryable=retryable)
        with call_context(self.organization, None):
            return (await self.stub.ReportFailed(request)).job


class _WithMetadata:
    """A stub whose every call carries ``metadata``."""

    def __init__(self, stub: Any, metadata: tuple[tuple[str, str], ...]) -> None:
        self._stub = stub
        self._metadata = metadata

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._stub, name)
        return lambda request, **options: method(request, metadata=self._metadata, **options)


@contextlib.asynccontextmanager
async def running_trainer(
    settings: TrainerSettings, executor: Executor | None = None
) -> AsyncIterator[TrainerClient]:
    """The real trainer server on loopback (in this process), and a client to it."""
    server = TrainerServer(settings, TrainerRuntime(settings, executor=executor))
    port = await server.start()
    address = f"127.0.0.1:{port}"
    channel = open_channel(address, settings)
    try:
        yield TrainerClient(channel, address)
    finally:
        await channel.close()
        await server.stop()


async def refusal(call: Awaitable[Any]) -> RpcError:
    """The error a call fails with (the test fails if it succeeds)."""
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return rpc_error(error)
    raise AssertionError("the call succeeded")


async def eventually(check: Callable[[], Awaitable[T | None]], *, timeout: float, what: str) -> T:
    """Calls ``check`` until it returns something other than None."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(0.05)
