"""A fake trainer (WorkerService) and a fake dataset service, served over real gRPC for the worker to talk to.

The fake trainer hands out one training plan, records every call in order with the
organization it carried, and answers with whatever directive a test asks for; like the real
one, it stores the checkpoints a worker streams to it (the worker has no object store access)
in the store of ``store_settings`` (the test's data dir, unless a test sets another); the fake
dataset service serves files from memory and keeps what is uploaded to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from services.common.errors import FailedPrecondition, InvalidArgument, NotFound
from services.common.object_store import open_object_store
from services.common.grpc_server import GrpcServer, ServiceRegistration
from services.common.settings import CommonSettings
from services.common.tenancy import current_organization
from tailor.dataset.v1 import dataset_service_pb2 as dataset_pb
from tailor.dataset.v1 import dataset_service_pb2_grpc as dataset_grpc
from tailor.trainer.v1 import job_pb2
from tailor.trainer.v1 import worker_service_pb2 as worker_pb
from tailor.trainer.v1 import worker_service_pb2_grpc as worker_grpc

CONTINUE = worker_pb.WORKER_DIRECTIVE_CONTINUE
CANCEL = worker_pb.WORKER_DIRECTIVE_CANCEL
PAUSE = worker_pb.WORKER_DIRECTIVE_PAUSE


@dataclass(frozen=True)
class Call:
    """One call the worker made to the fake trainer."""

    method: str
    request: Any
    organization: str
    at: float


class FakeTrainer(worker_grpc.WorkerServiceServicer):
    """Stands in for the trainer's WorkerService."""

    def __init__(self) -> None:
        self.plan = worker_pb.TrainingPlan()
        self.calls: list[Call] = []
        # Decides the directive of each response from (method, request); CONTINUE by default.
        self.directive: Callable[[str, Any], int] = lambda method, request: CONTINUE
        self.refuse: set[str] = set()  # methods answered FAILED_PRECONDITION
        self.started = asyncio.Event()
        # Where UploadCheckpoint/DownloadCheckpoint store and read (set by the worker_settings fixture).
        self.store_settings: CommonSettings | None = None

    def _record(self, method: str, request: Any) -> int:
        self.calls.append(Call(method, request, current_organization(), time.monotonic()))
        if method in self.refuse:
            raise FailedPrecondition(f"{method} refused: the attempt no longer owns the job")
        return self.directive(method, request)

    async def ClaimJob(
        self, request: worker_pb.ClaimJobRequest, context: grpc.aio.ServicerContext
    ) -> worker_pb.ClaimJobResponse:
        self._record("ClaimJob", request)
        return worker_pb.ClaimJobResponse(plan=self.plan)

    async def ReportStarted(
        self, request: worker_pb.ReportStartedRequest, context: grpc.aio.ServicerContext
    ) -> worker_pb.ReportStartedResponse:
        directive = self._record("ReportStarted", request)
        self.started.set()
        return worker_pb.ReportStartedResponse(directive=directive)

    async def ReportEvents(
        self, request: worker_pb.ReportEventsRequest, context: grpc.aio.ServicerContext
    ) -> worker_pb.ReportEventsResponse:
        return worker_pb.ReportEventsResponse(directive=self._record("ReportEvents", request))

    async def ReportCheckpoint(
        self, request: worker_pb.ReportCheckpointRequest, context: grpc.aio.ServicerContext
    ) -> worker_pb.ReportCheckpointResponse:
        directive = self._record("ReportCheckpoint", request)
        checkpoint = job_pb2.Checkpoint(id=f"ftckpt-{request.step_number}", step_number=request.step_number)
        return worker_pb.ReportCheckpointResponse(checkpoint=checkpoint, directive=directive)

    async def ReportSucceeded(
        self, request: worker_pb.ReportSucceededRequest, context: grpc.aio.ServicerContext
    ) -> worker_pb.ReportSucceededResponse:
        self._record("ReportSucceeded", request)
        return worker_pb.ReportSucceededResponse(
            job=job_pb2.Job(id=request.worker.job_id, status=job_pb2.JOB_STATUS_SUCCEEDED)
        )

    async def ReportFailed(
        self, request: worker_pb.ReportFailedRequest, context: grpc.aio.ServicerContext
    ) -> worker_pb.ReportFailedResponse:
        self._record("ReportFailed", request)
        return worker_pb.ReportFailedResponse(
            job=job_pb2.Job(id=request.worker.job_id, status=job_pb2.JOB_STATUS_FAILED)
        )

    async def UploadCheckpoint(
        self,
        request_iterator: AsyncIterator[worker_pb.UploadCheckpointRequest],
        context: grpc.aio.ServicerContext,
    ) -> worker_pb.UploadCheckpointResponse:
        messages = aiter(request_iterator)
        first = await anext(messages)
        key = first.header.key
        if not key.startswith(self.plan.output_prefix):
            raise InvalidArgument(f"key {key!r} is not under the job's output prefix", param="key")

        async def chunks() -> AsyncIterator[bytes]:
            async for message in messages:
                yield message.chunk

        assert self.store_settings is not None
        store = open_object_store(self.store_settings)
        try:
            stored = await store.put(key, chunks())
        finally:
            await store.close()
        return worker_pb.UploadCheckpointResponse(key=key, bytes=stored.size)

    async def DownloadCheckpoint(
        self, request: worker_pb.DownloadCheckpointRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[worker_pb.DownloadCheckpointResponse]:
        assert self.store_settings is not None
        store = open_object_store(self.store_settings)
        try:
            async for stored in store.list(request.prefix):
                yield worker_pb.DownloadCheckpointResponse(path=stored.key.removeprefix(request.prefix))
                async for chunk in store.get(stored.key):
                    yield worker_pb.DownloadCheckpointResponse(chunk=chunk)
        finally:
            await store.close()

    # What the tests read.

    def methods(self) -> list[str]:
        """The methods called, in order, with runs of ReportEvents collapsed into one."""
        names: list[str] = []
        for call in self.calls:
            if not (call.method == "ReportEvents" and names and names[-1] == "ReportEvents"):
                names.append(call.method)
        return names

    def requests(self, method: str) -> list[Any]:
        return [call.request for call in self.calls if call.method == method]

    def events(self) -> list[worker_pb.WorkerEvent]:
        return [event for request in self.requests("ReportEvents") for event in request.events]

    def metrics_events(self) -> list[worker_pb.WorkerEvent]:
        return [event for event in self.events() if event.type == job_pb2.EVENT_TYPE_METRICS]

    def messages(self) -> list[str]:
        return [event.message for event in self.events() if event.type == job_pb2.EVENT_TYPE_MESSAGE]


class FakeDatasets(dataset_grpc.DatasetServiceServicer):
    """Stands in for the dataset service: files served from memory, uploads kept."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.uploads: list[tuple[dataset_pb.UploadFileMetadata, bytes, str]] = []

    async def DownloadFile(
        self, request: dataset_pb.DownloadFileRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[dataset_pb.DownloadFileResponse]:
        content = self.files.get(request.file_id)
        if content is None:
            raise NotFound(f"file {request.file_id} not found", param="file_id")
        record = dataset_pb.File(
            id=request.file_id, bytes=len(content), status=dataset_pb.FILE_STATUS_PROCESSED
        )
        yield dataset_pb.DownloadFileResponse(file=record)
        for start in range(0, len(content), 4096):
            yield dataset_pb.DownloadFileResponse(chunk=content[start : start + 4096])

    async def UploadFile(
        self, request_iterator: AsyncIterator[dataset_pb.UploadFileRequest], context: grpc.aio.ServicerContext
    ) -> dataset_pb.UploadFileResponse:
        metadata, chunks = None, []
        async for message in request_iterator:
            if message.HasField("metadata"):
                metadata = message.metadata
            else:
                chunks.append(message.chunk)
        file_id = f"file-results{len(self.uploads) + 1}"
        assert metadata is not None
        self.uploads.append((metadata, b"".join(chunks), current_organization()))
        return dataset_pb.UploadFileResponse(
            file=dataset_pb.File(
                id=file_id,
                filename=metadata.filename,
                purpose=metadata.purpose,
                status=dataset_pb.FILE_STATUS_PROCESSED,
            )
        )

    def add_jsonl(self, file_id: str, records: list[Any]) -> bytes:
        content = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records).encode()
        self.files[file_id] = content
        return content


@dataclass
class FakeServices:
    """Both fakes on one loopback server."""

    trainer: FakeTrainer = field(default_factory=FakeTrainer)
    datasets: FakeDatasets = field(default_factory=FakeDatasets)
    address: str = ""


@contextlib.asynccontextmanager
async def serving_fakes(state_dir: Path) -> AsyncIterator[FakeServices]:
    """Serve a fresh FakeTrainer and FakeDatasets on a free loopback port."""
    fakes = FakeServices()
    registrations = [
        ServiceRegistration(
            worker_pb.DESCRIPTOR.services_by_name["WorkerService"].full_name,
            worker_grpc.add_WorkerServiceServicer_to_server,
            fakes.trainer,
        ),
        ServiceRegistration(
            dataset_pb.DESCRIPTOR.services_by_name["DatasetService"].full_name,
            dataset_grpc.add_DatasetServiceServicer_to_server,
            fakes.datasets,
        ),
    ]
    server = GrpcServer(
        CommonSettings(data_dir=state_dir, grpc_shutdown_grace_s=0.5), "127.0.0.1:0", registrations
    )
    port = await server.start()
    fakes.address = f"127.0.0.1:{port}"
    try:
        yield fakes
    finally:
        await server.stop()
