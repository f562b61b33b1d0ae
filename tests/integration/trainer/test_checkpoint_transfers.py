"""Checkpoints go through the trainer: a worker has no object store access of its own.

``WorkerService.UploadCheckpoint`` stores what a worker streams, and only under its job's output
prefix, only for the job's current attempt; ``DownloadCheckpoint`` reads back only that job's
outputs. Each test plays a worker with the real launch token the trainer minted.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

import tailor.trainer.v1.worker_service_pb2 as worker_pb2
from services.common.object_store import open_object_store
from services.trainer.config import TrainerSettings
from services.trainer.storage import output_prefix
from tailor.trainer.v1 import job_pb2
from tests.integration.trainer.conftest import ORG
from tests.integration.trainer.harness import FakeDataset, RecordingExecutor, TrainerClient
from tests.integration.trainer.test_internal_auth import launch_token, status_of
from tests.support.internal_auth import bearer, worker_token


def upload(
    workers: Any, identity: worker_pb2.WorkerIdentity, key: str, data: bytes, metadata: Any
) -> Any:
    async def messages() -> AsyncIterator[worker_pb2.UploadCheckpointRequest]:
        yield worker_pb2.UploadCheckpointRequest(
            header=worker_pb2.UploadCheckpointHeader(worker=identity, key=key)
        )
        for start in range(0, len(data), 5):
            yield worker_pb2.UploadCheckpointRequest(chunk=data[start : start + 5])

    return workers.UploadCheckpoint(messages(), metadata=metadata)


async def download(
    workers: Any, identity: worker_pb2.WorkerIdentity, prefix: str, metadata: Any
) -> dict[str, bytes]:
    objects: dict[str, bytes] = {}
    path = None
    request = worker_pb2.DownloadCheckpointRequest(worker=identity, prefix=prefix)
    async for message in workers.DownloadCheckpoint(request, metadata=metadata):
        if message.WhichOneof("payload") == "path":
            path = message.path
            objects[path] = b""
        else:
            assert path is not None
            objects[path] += message.chunk
    return objects


async def stream_status(call: Any) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in call:
            pass
    return caught.value.code()


async def stored(settings: TrainerSettings, prefix: str) -> list[str]:
    store = open_object_store(settings)
    try:
        return [item.key async for item in store.list(prefix)]
    finally:
        await store.close()


async def test_a_worker_stores_and_reads_back_its_own_checkpoint_through_the_trainer(
    scripted_trainer: TrainerClient, files: FakeDataset, executor: RecordingExecutor, settings: TrainerSettings
) -> None:
    job = await scripted_trainer.create(ORG, training_file=files.add_file(ORG))
    identity = await executor.launched(job.id)
    metadata = bearer(launch_token(executor, job.id))
    workers = scripted_trainer.workers
    plan = (await workers.ClaimJob(worker_pb2.ClaimJobRequest(worker=identity), metadata=metadata)).plan
    assert plan.output_prefix == output_prefix(ORG, job.id)

    state = f"{plan.output_prefix}checkpoints/step-2/state/"
    written = await upload(workers, identity, state + "trainer_state.pt", b"x" * 23, metadata)
    assert (written.key, written.bytes) == (state + "trainer_state.pt", 23)
    await upload(workers, identity, state + "rng/cpu.pt", b"", metadata)

    assert await download(workers, identity, state, metadata) == {
        "trainer_state.pt": b"x" * 23,
        "rng/cpu.pt": b"",
    }


async def test_a_worker_token_cannot_write_or_read_outside_its_jobs_prefix(
    scripted_trainer: TrainerClient, files: FakeDataset, executor: RecordingExecutor, settings: TrainerSettings
) -> None:
    mine = await scripted_trainer.create(ORG, training_file=files.add_file(ORG))
    theirs = await scripted_trainer.create(ORG, training_file=files.add_file(ORG))
    my_identity = await executor.launched(mine.id)
    their_identity = await executor.launched(theirs.id)
    metadata = bearer(launch_token(executor, mine.id))
    their_metadata = bearer(launch_token(executor, theirs.id))
    workers = scripted_trainer.workers
    await workers.ClaimJob(worker_pb2.ClaimJobRequest(worker=my_identity), metadata=metadata)
    await workers.ClaimJob(worker_pb2.ClaimJobRequest(worker=their_identity), metadata=their_metadata)
    their_state = f"{output_prefix(ORG, theirs.id)}checkpoints/step-1/state/"
    await upload(workers, their_identity, their_state + "trainer_state.pt", b"theirs", their_metadata)

    # Keys outside its own prefix, under its own identity: refused by the trainer.
    for key in (
        their_state + "trainer_state.pt",
        "orgs/org-other/jobs/x/adapter/adapter_model.safetensors",
        "files/anything",
        f"{output_prefix(ORG, mine.id)}../{theirs.id}/adapter/x",
        output_prefix(ORG, mine.id),
    ):
        assert await status_of(upload(workers, my_identity, key, b"evil", metadata)) == (
            grpc.StatusCode.INVALID_ARGUMENT
        ), key
    # Naming the other job's attempt: refused before the trainer looks.
    assert (
        await status_of(upload(workers, their_identity, their_state + "trainer_state.pt", b"evil", metadata))
        == grpc.StatusCode.PERMISSION_DENIED
    )
    # Reading the other job's checkpoint: refused either way.
    assert (
        await stream_status(
            workers.DownloadCheckpoint(
                worker_pb2.DownloadCheckpointRequest(worker=my_identity, prefix=their_state), metadata=metadata
            )
        )
        == grpc.StatusCode.INVALID_ARGUMENT
    )
    assert (
        await stream_status(
            workers.DownloadCheckpoint(
                worker_pb2.DownloadCheckpointRequest(worker=their_identity, prefix=their_state),
                metadata=metadata,
            )
        )
        == grpc.StatusCode.PERMISSION_DENIED
    )
    # Nothing was written but the other job's own checkpoint.
    assert await stored(settings, "orgs/") == [their_state + "trainer_state.pt"]
    store = open_object_store(settings)
    try:
        assert await store.get_bytes(their_state + "trainer_state.pt") == b"theirs"
    finally:
        await store.close()


async def test_an_attempt_no_longer_current_cannot_upload(
    scripted_trainer: TrainerClient, files: FakeDataset, executor: RecordingExecutor, settings: TrainerSettings
) -> None:
    job = await scripted_trainer.create(ORG, training_file=files.add_file(ORG))
    identity = await executor.launched(job.id)
    metadata = bearer(launch_token(executor, job.id))
    workers = scripted_trainer.workers
    plan = (await workers.ClaimJob(worker_pb2.ClaimJobRequest(worker=identity), metadata=metadata)).plan
    key = f"{plan.output_prefix}checkpoints/step-1/adapter/adapter_model.safetensors"

    # A superseded attempt (a token for another attempt of the same job): refused by the trainer.
    stale = worker_pb2.WorkerIdentity(job_id=job.id, attempt_id="attempt-superseded")
    stale_metadata = bearer(worker_token(ORG, job.id, stale.attempt_id, []))
    assert await status_of(upload(workers, stale, key, b"late", stale_metadata)) == (
        grpc.StatusCode.FAILED_PRECONDITION
    )
    # The attempt, once its job ended, neither.
    await workers.ReportFailed(
        worker_pb2.ReportFailedRequest(worker=identity, error=job_pb2.JobError(code="x", message="x")),
        metadata=metadata,
    )
    assert await status_of(upload(workers, identity, key, b"late", metadata)) == (
        grpc.StatusCode.FAILED_PRECONDITION
    )
    assert await stored(settings, plan.output_prefix) == []


async def test_a_job_continuing_from_a_fine_tuned_model_reads_that_adapter_only(
    scripted_trainer: TrainerClient, files: FakeDataset, executor: RecordingExecutor
) -> None:
    first = await scripted_trainer.create(ORG, training_file=files.add_file(ORG))
    first_identity = await executor.launched(first.id)
    first_metadata = bearer(launch_token(executor, first.id))
    workers = scripted_trainer.workers
    plan = (
        await workers.ClaimJob(worker_pb2.ClaimJobRequest(worker=first_identity), metadata=first_metadata)
    ).plan
    adapter, state = plan.output_prefix + "adapter/", plan.output_prefix + "checkpoints/step-1/state/"
    await upload(workers, first_identity, adapter + "adapter_config.json", b"{}", first_metadata)
    await upload(workers, first_identity, state + "trainer_state.pt", b"state", first_metadata)
    finished = await workers.ReportSucceeded(
        worker_pb2.ReportSucceededRequest(worker=first_identity, adapter_uri=adapter, lora_rank=8),
        metadata=first_metadata,
    )
    executor.exit(first_identity.attempt_id)

    second = await scripted_trainer.create(
        ORG, training_file=files.add_file(ORG), model=finished.job.fine_tuned_model
    )
    identity = await executor.launched(second.id)
    metadata = bearer(launch_token(executor, second.id))
    second_plan = (await workers.ClaimJob(worker_pb2.ClaimJobRequest(worker=identity), metadata=metadata)).plan
    assert second_plan.initial_adapter_uri == adapter

    assert await download(workers, identity, adapter, metadata) == {"adapter_config.json": b"{}"}
    # The first job's other outputs stay out of reach.
    for prefix in (state, plan.output_prefix + "checkpoints/", plan.output_prefix):
        request = worker_pb2.DownloadCheckpointRequest(worker=identity, prefix=prefix)
        assert (
            await stream_status(workers.DownloadCheckpoint(request, metadata=metadata))
            == grpc.StatusCode.INVALID_ARGUMENT
        ), prefix
