"""Every byte the worker moves: dataset files in, the results file out, adapters and states both ways.

Two places hold what a job reads and writes, each behind its own client:

* the dataset service (gRPC ``DatasetService``): the training and validation files are streamed
  down with ``DownloadFile``; the results CSV goes up with ``UploadFile`` as a
  ``fine-tune-results`` file, in chunks, since a client-streaming call carries the bytes;
* the trainer (gRPC ``WorkerService.UploadCheckpoint``/``DownloadCheckpoint``): checkpoints and
  adapters (one object per file of a directory, under a prefix of the job's output) are uploaded
  as they are saved, and a resume state or an initial adapter is downloaded before training. The
  worker has no object store access of its own; the trainer stores and reads for it.

Failures of the dataset service become :class:`JobFailure`: ``invalid_*_file`` for a file that
does not exist or that the service found invalid, ``dataset_unavailable`` (retryable) otherwise.
A refused checkpoint transfer (stale attempt, a key not the job's) raises ReportRefused; any
other failure is ``object_store_unavailable`` (retryable).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc

from services.trainer.worker.checkpoints import CheckpointLocation, as_prefix
from services.trainer.worker.failures import (
    DATASET_UNAVAILABLE,
    INTERNAL_ERROR,
    OBJECT_STORE_UNAVAILABLE,
    JobFailure,
    invalid_file,
)
from services.trainer.worker.progress import ReportRefused
from tailor.dataset.v1 import dataset_service_pb2, dataset_service_pb2_grpc
from tailor.trainer.v1 import worker_service_pb2, worker_service_pb2_grpc

# A file download or a results upload is one long stream, not a short call.
FILE_TRANSFER_TIMEOUT_S = 3600.0
UPLOAD_CHUNK_BYTES = 1 << 20


async def download_dataset_file(
    datasets: dataset_service_pb2_grpc.DatasetServiceStub, file_id: str, file_param: str, path: Path
) -> Path:
    """Stream a dataset file to ``path`` (the first message is its record); returns ``path``.

    ``file_param`` is the job field naming the file (``training_file``, ``validation_file``).
    """
    request = dataset_service_pb2.DownloadFileRequest(file_id=file_id)
    try:
        with path.open("wb") as output:
            async for message in datasets.DownloadFile(request, timeout=FILE_TRANSFER_TIMEOUT_S):
                if message.HasField("file"):
                    _check_file_record(message.file, file_param)
                else:
                    await asyncio.to_thread(output.write, message.chunk)
    except grpc.aio.AioRpcError as error:
        if error.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.PERMISSION_DENIED):
            raise invalid_file(file_param, 0, f"file {file_id} does not exist.") from None
        raise JobFailure(
            DATASET_UNAVAILABLE,
            f"The dataset service could not send file {file_id}: {error.code().name}: {error.details()}",
            retryable=True,
        ) from error
    return path


def _check_file_record(record: dataset_service_pb2.File, file_param: str) -> None:
    """A file the dataset service found invalid fails the job with its first problem."""
    if record.status == dataset_service_pb2.FILE_STATUS_ERROR:
        problem = record.problems[0] if record.problems else None
        reason = problem.message if problem else (record.status_details or "the dataset service rejected it.")
        raise invalid_file(file_param, problem.line if problem else 0, reason)


async def upload_results_file(
    datasets: dataset_service_pb2_grpc.DatasetServiceStub, filename: str, content: bytes
) -> str:
    """Store ``content`` as a ``fine-tune-results`` file of the job's organization; returns its id."""

    async def messages() -> AsyncIterator[dataset_service_pb2.UploadFileRequest]:
        # The announced size completes the upload: no end message is needed after the last chunk.
        yield dataset_service_pb2.UploadFileRequest(
            metadata=dataset_service_pb2.UploadFileMetadata(
                filename=filename,
                purpose=dataset_service_pb2.FILE_PURPOSE_FINE_TUNE_RESULTS,
                expected_bytes=len(content),
            )
        )
        for start in range(0, len(content), UPLOAD_CHUNK_BYTES):
            yield dataset_service_pb2.UploadFileRequest(chunk=content[start : start + UPLOAD_CHUNK_BYTES])

    try:
        response = await datasets.UploadFile(messages(), timeout=FILE_TRANSFER_TIMEOUT_S)
    except grpc.aio.AioRpcError as error:
        raise JobFailure(
            DATASET_UNAVAILABLE,
            f"The dataset service could not store the results file: {error.code().name}: {error.details()}",
            retryable=True,
        ) from error
    return response.file.id


async def upload_directory(link: CheckpointLink, directory: Path, prefix: str) -> None:
    """Upload every file directly in ``directory`` to ``{prefix}{file name}``, through the trainer."""
    for path in sorted(directory.iterdir()):
        if path.is_file():
            await link.upload_file(f"{as_prefix(prefix)}{path.name}", path)


async def upload_checkpoint(link: CheckpointLink, local: Path, location: CheckpointLocation) -> None:
    """Upload a checkpoint saved under ``local`` (its ``adapter/`` and ``state/``) to ``location``."""
    await upload_directory(link, local / "adapter", location.adapter_prefix)
    await upload_directory(link, local / "state", location.state_prefix)


async def download_prefix(link: CheckpointLink, prefix: str, directory: Path) -> Path:
    """Download every object under ``prefix`` into ``directory`` (keeping sub-paths); returns it.

    Raises FileNotFoundError when nothing is stored under the prefix.
    """
    if not await link.download_prefix(as_prefix(prefix), directory):
        raise FileNotFoundError(f"nothing is stored under {as_prefix(prefix)!r}")
    return directory


class CheckpointLink:
    """Checkpoint transfers through ``WorkerService.UploadCheckpoint``/``DownloadCheckpoint``.

    The worker has no object store access: the trainer stores and reads the objects, and only
    under this job's output prefix (or its initial adapter). A refusal (the attempt is stale,
    the key is not the job's) raises :class:`ReportRefused`; an unavailable trainer or store
    fails the job as ``object_store_unavailable`` (retryable).
    """

    def __init__(
        self, stub: worker_service_pb2_grpc.WorkerServiceStub, identity: worker_service_pb2.WorkerIdentity
    ) -> None:
        self._stub = stub
        self._identity = identity

    async def upload_file(self, key: str, path: Path) -> None:
        """Stream the local file ``path`` into the object ``key``, a chunk at a time."""
        source = await asyncio.to_thread(open, path, "rb")

        async def messages() -> AsyncIterator[worker_service_pb2.UploadCheckpointRequest]:
            yield worker_service_pb2.UploadCheckpointRequest(
                header=worker_service_pb2.UploadCheckpointHeader(worker=self._identity, key=key)
            )
            while chunk := await asyncio.to_thread(source.read, UPLOAD_CHUNK_BYTES):
                yield worker_service_pb2.UploadCheckpointRequest(chunk=chunk)

        try:
            await self._stub.UploadCheckpoint(messages(), timeout=FILE_TRANSFER_TIMEOUT_S)
        except grpc.aio.AioRpcError as error:
            raise _transfer_failure(error, f"could not store {key}") from error
        finally:
            source.close()

    async def download_prefix(self, prefix: str, directory: Path) -> bool:
        """Write every object under ``prefix`` into ``directory``; False when there was none."""
        request = worker_service_pb2.DownloadCheckpointRequest(worker=self._identity, prefix=prefix)
        output = None
        found = False
        try:
            async for message in self._stub.DownloadCheckpoint(request, timeout=FILE_TRANSFER_TIMEOUT_S):
                if message.WhichOneof("payload") == "path":
                    if output is not None:
                        output.close()
                    target = (directory / message.path).resolve()
                    if not target.is_relative_to(directory.resolve()):
                        raise ValueError(f"the trainer sent a path outside the download: {message.path!r}")
                    target.parent.mkdir(parents=True, exist_ok=True)
                    output = await asyncio.to_thread(open, target, "wb")
                    found = True
                elif output is not None:
                    await asyncio.to_thread(output.write, message.chunk)
        except grpc.aio.AioRpcError as error:
            raise _transfer_failure(error, f"could not send {prefix}") from error
        finally:
            if output is not None:
                output.close()
        return found


def _transfer_failure(error: grpc.aio.AioRpcError, what: str) -> Exception:
    if error.code() in (
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.PERMISSION_DENIED,
    ):
        return ReportRefused(error.details() or error.code().name)
    if error.code() == grpc.StatusCode.INVALID_ARGUMENT:
        return JobFailure(INTERNAL_ERROR, f"The trainer {what}: {error.details()}")
    return JobFailure(
        OBJECT_STORE_UNAVAILABLE,
        f"The object store is unavailable: the trainer {what}: {error.code().name}: {error.details()}",
        retryable=True,
    )
