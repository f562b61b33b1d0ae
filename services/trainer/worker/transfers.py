"""Every byte the worker moves: dataset files in, the results file out, adapters and states both ways.

Two places hold what a job reads and writes, each behind its own client:

* the dataset service (gRPC ``DatasetService``): the training and validation files are streamed
  down with ``DownloadFile``; the results CSV goes up with ``UploadFile`` as a
  ``fine-tune-results`` file, in chunks, since a client-streaming call carries the bytes;
* the object store: checkpoints and adapters (one object per file of a directory, under a
  prefix of the job's output) are uploaded as they are saved, and a resume state or an initial
  adapter is downloaded before training.

Failures of the dataset service become :class:`JobFailure`: ``invalid_*_file`` for a file that
does not exist or that the service found invalid, ``dataset_unavailable`` (retryable) otherwise.
Object store errors are left to :func:`~.failures.job_failure`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc

from services.common.object_store import ObjectStore
from services.trainer.worker.checkpoints import CheckpointLocation, as_prefix
from services.trainer.worker.failures import DATASET_UNAVAILABLE, JobFailure, invalid_file
from tailor.dataset.v1 import dataset_service_pb2, dataset_service_pb2_grpc

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


async def upload_directory(store: ObjectStore, directory: Path, prefix: str) -> None:
    """Upload every file directly in ``directory`` to ``{prefix}{file name}``."""
    for path in sorted(directory.iterdir()):
        if path.is_file():
            await store.put_file(f"{as_prefix(prefix)}{path.name}", path)


async def upload_checkpoint(store: ObjectStore, local: Path, location: CheckpointLocation) -> None:
    """Upload a checkpoint saved under ``local`` (its ``adapter/`` and ``state/``) to ``location``."""
    await upload_directory(store, local / "adapter", location.adapter_prefix)
    await upload_directory(store, local / "state", location.state_prefix)


async def download_prefix(store: ObjectStore, prefix: str, directory: Path) -> Path:
    """Download every object under ``prefix`` into ``directory`` (keeping sub-paths); returns it.

    Raises FileNotFoundError when nothing is stored under the prefix.
    """
    prefix = as_prefix(prefix)
    found = False
    async for stored in store.list(prefix):
        found = True
        await store.get_file(stored.key, directory / stored.key.removeprefix(prefix))
    if not found:
        raise FileNotFoundError(f"nothing is stored under {prefix!r}")
    return directory
