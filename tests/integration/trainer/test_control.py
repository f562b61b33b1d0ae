"""Cancel, pause and resume with real worker processes, and the order in which queued jobs start."""

from __future__ import annotations

import asyncio

import grpc
import psutil
import pytest

import tailor.trainer.v1.model_registry_service_pb2 as registry_pb2
import tailor.trainer.v1.trainer_service_pb2 as trainer_pb2
from services.common.object_store import open_object_store
from services.common.tenancy import call_context
from services.trainer.config import TrainerSettings
from tailor.trainer.v1 import job_pb2
from tests.integration.trainer.conftest import ORG
from tests.integration.trainer.harness import (
    FakeDataset,
    RecordingExecutor,
    TrainerClient,
    eventually,
    refusal,
    running_trainer,
)

SLOW = "steps_per_epoch=4,step_s=0.25"


def fake_workers() -> list[psutil.Process]:
    """The fake worker processes this test process started (its children)."""
    children = psutil.Process().children(recursive=True)
    return [p for p in children if "tests.support.fake_worker" in " ".join(_cmdline(p))]


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.Error:
        return []


async def cancel(trainer: TrainerClient, job_id: str) -> job_pb2.Job:
    with call_context(ORG, None):
        return (await trainer.jobs.CancelJob(trainer_pb2.CancelJobRequest(job_id=job_id))).job


@pytest.fixture
def settings(settings: TrainerSettings) -> TrainerSettings:
    # One job at a time, so a second one waits in the queue.
    return settings.model_copy(update={"trainer_max_concurrent_jobs": 1})


async def test_cancel_stops_a_running_worker_and_a_queued_job_never_starts(
    trainer: TrainerClient, files: FakeDataset, settings: TrainerSettings
) -> None:
    running = await trainer.create(ORG, training_file=files.add_file(ORG), metadata={"fake_worker": SLOW})
    queued = await trainer.create(ORG, training_file=files.add_file(ORG))
    await trainer.wait_for(ORG, running.id, job_pb2.JOB_STATUS_RUNNING)
    await trainer.wait_for(ORG, queued.id, job_pb2.JOB_STATUS_QUEUED)
    assert len(fake_workers()) == 1

    assert (await cancel(trainer, queued.id)).status == job_pb2.JOB_STATUS_CANCELLED
    cancelled = await cancel(trainer, running.id)
    assert cancelled.status == job_pb2.JOB_STATUS_CANCELLED

    await eventually(lambda: _none_left(), timeout=5, what="the worker to stop")
    await asyncio.sleep(0.5)  # room for a wrongly launched worker to show up
    assert fake_workers() == []
    assert "Fine-tuning job started" not in await trainer.messages(ORG, queued.id)
    for job_id in (running.id, queued.id):
        job = await trainer.job(ORG, job_id)
        assert job.status == job_pb2.JOB_STATUS_CANCELLED and not job.fine_tuned_model
    with call_context(ORG, None):
        models = (await trainer.models.ListModels(registry_pb2.ListModelsRequest())).models
    assert all(model.kind == registry_pb2.MODEL_KIND_BASE for model in models)

    # Nothing unregistered is left of the cancelled run in the object store.
    store = open_object_store(settings)
    prefix = f"orgs/{ORG}/jobs/{running.id}/"
    kept = tuple(
        f"{prefix}checkpoints/step-{c.step_number}/" for c in await trainer.checkpoints(ORG, running.id)
    )
    leftovers = [stored.key async for stored in store.list(prefix)]
    assert all(key.startswith(kept) for key in leftovers), leftovers
    await store.close()

    error = await refusal(cancel(trainer, running.id))
    assert error.status == grpc.StatusCode.FAILED_PRECONDITION


async def _none_left() -> bool | None:
    return True if not fake_workers() else None


async def test_a_paused_job_resumes_from_its_checkpoint_and_succeeds(
    trainer: TrainerClient, files: FakeDataset
) -> None:
    job = await trainer.create(ORG, training_file=files.add_file(ORG), metadata={"fake_worker": SLOW})
    await trainer.wait_for(ORG, job.id, job_pb2.JOB_STATUS_RUNNING)
    await eventually(lambda: _stepped(trainer, job.id), timeout=10, what="a training step")
    with call_context(ORG, None):
        paused = (await trainer.jobs.PauseJob(trainer_pb2.PauseJobRequest(job_id=job.id))).job
    assert paused.status == job_pb2.JOB_STATUS_PAUSED

    checkpoints = await eventually(
        lambda: _checkpoints(trainer, job.id), timeout=10, what="the pause checkpoint"
    )
    pause_step = checkpoints[0].step_number
    await eventually(lambda: _none_left(), timeout=10, what="the paused worker to exit")
    assert (await trainer.job(ORG, job.id)).status == job_pb2.JOB_STATUS_PAUSED

    with call_context(ORG, None):
        await trainer.jobs.ResumeJob(trainer_pb2.ResumeJobRequest(job_id=job.id))
    done = await trainer.wait_for(ORG, job.id, job_pb2.JOB_STATUS_SUCCEEDED)
    assert done.fine_tuned_model
    messages = await trainer.messages(ORG, job.id)
    assert f"Fine-tuning job started from the checkpoint at step {pause_step}" in messages
    steps = [m for m in messages if m.startswith("Step ")]
    assert len(steps) == len(set(steps))  # no step trained twice


async def _stepped(trainer: TrainerClient, job_id: str) -> bool | None:
    return True if any(m.startswith("Step ") for m in await trainer.messages(ORG, job_id)) else None


async def _checkpoints(trainer: TrainerClient, job_id: str) -> list[job_pb2.Checkpoint] | None:
    return await trainer.checkpoints(ORG, job_id) or None


async def test_queued_jobs_start_by_priority_then_in_order(
    settings: TrainerSettings, files: FakeDataset
) -> None:
    executor = RecordingExecutor()
    async with running_trainer(settings, executor) as trainer:
        blocker = await trainer.create(ORG, training_file=files.add_file(ORG))
        await executor.launched(blocker.id)
        first_low = await trainer.create(ORG, training_file=files.add_file(ORG))
        high = await trainer.create(ORG, training_file=files.add_file(ORG), priority=5)
        second_low = await trainer.create(ORG, training_file=files.add_file(ORG))
        for job in (first_low, high, second_low):
            await trainer.wait_for(ORG, job.id, job_pb2.JOB_STATUS_QUEUED)
        await asyncio.sleep(0.3)
        assert [launch.job_id for launch in executor.launches] == [blocker.id]

        for running, following in ((blocker, high), (high, first_low), (first_low, second_low)):
            await cancel(trainer, running.id)
            await executor.launched(following.id)
        assert [launch.job_id for launch in executor.launches] == [
            blocker.id,
            high.id,
            first_low.id,
            second_low.id,
        ]
