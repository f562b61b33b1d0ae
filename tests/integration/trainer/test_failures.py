"""Workers that crash, hang or fail: the job is retried once from its last checkpoint, or fails clearly."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.trainer.config import TrainerSettings
from tailor.trainer.v1 import job_pb2
from tests.integration.trainer.conftest import ORG
from tests.integration.trainer.harness import (
    FakeDataset,
    PlayedWorker,
    RecordingExecutor,
    TrainerClient,
    running_trainer,
)


@pytest.fixture
def settings(settings: TrainerSettings) -> TrainerSettings:
    return settings.model_copy(update={"trainer_heartbeat_timeout_s": 2.0})


async def test_a_crashed_worker_is_retried_from_its_last_checkpoint(
    trainer: TrainerClient, files: FakeDataset
) -> None:
    job = await trainer.create(
        ORG, training_file=files.add_file(ORG), metadata={"fake_worker": "crash_at_step=5"}
    )
    done = await trainer.wait_for(ORG, job.id, job_pb2.JOB_STATUS_SUCCEEDED)
    assert done.fine_tuned_model
    messages = await trainer.messages(ORG, job.id)
    assert (
        "The training worker crashed: the worker process exited with code 3. "
        "Retrying from the checkpoint at step 3." in messages
    )
    assert "Fine-tuning job started from the checkpoint at step 3" in messages
    warning = next(e for e in await trainer.events(ORG, job.id) if "crashed" in e.message)
    assert warning.level == job_pb2.EVENT_LEVEL_WARN


async def test_a_worker_that_keeps_crashing_fails_the_job(trainer: TrainerClient, files: FakeDataset) -> None:
    behaviour = "crash_at_step=2,always=1"
    job = await trainer.create(ORG, training_file=files.add_file(ORG), metadata={"fake_worker": behaviour})
    failed = await trainer.wait_for(ORG, job.id, job_pb2.JOB_STATUS_FAILED)
    assert failed.error.code == "worker_crashed"
    assert failed.error.message == "The training worker crashed: the worker process exited with code 3."
    assert not failed.fine_tuned_model and failed.HasField("finished_at")
    events = await trainer.events(ORG, job.id)
    assert (events[0].level, events[0].message) == (job_pb2.EVENT_LEVEL_ERROR, failed.error.message)


async def test_a_hung_worker_is_stopped_and_the_job_retried(
    trainer: TrainerClient, files: FakeDataset
) -> None:
    job = await trainer.create(
        ORG, training_file=files.add_file(ORG), metadata={"fake_worker": "hang_at_step=5"}
    )
    done = await trainer.wait_for(ORG, job.id, job_pb2.JOB_STATUS_SUCCEEDED)
    assert done.fine_tuned_model
    messages = await trainer.messages(ORG, job.id)
    assert (
        "The training worker stopped responding (no heartbeat for 2 seconds). "
        "Retrying from the checkpoint at step 3." in messages
    )


async def test_a_worker_reporting_bad_data_fails_the_job_at_once(
    trainer: TrainerClient, files: FakeDataset
) -> None:
    job = await trainer.create(
        ORG, training_file=files.add_file(ORG), metadata={"fake_worker": "fail=invalid_training_file"}
    )
    failed = await trainer.wait_for(ORG, job.id, job_pb2.JOB_STATUS_FAILED)
    assert (failed.error.code, failed.error.param) == ("invalid_training_file", "training_file")
    assert "Retrying" not in " ".join(await trainer.messages(ORG, job.id))


async def test_silent_workers_fail_the_job_when_no_retries_are_left(
    tmp_path: Path, settings: TrainerSettings, files: FakeDataset
) -> None:
    executor = RecordingExecutor()
    no_retries = settings.model_copy(
        update={"trainer_worker_retries": 0, "trainer_worker_start_timeout_s": 1.0}
    )
    async with running_trainer(no_retries, executor) as trainer:
        never_started = await trainer.create(ORG, training_file=files.add_file(ORG))
        lost = await trainer.create(ORG, training_file=files.add_file(ORG))
        identity = await executor.launched(lost.id)
        await PlayedWorker(trainer, identity, ORG).claim()

        failed = await trainer.wait_for(ORG, lost.id, job_pb2.JOB_STATUS_FAILED)
        assert failed.error.code == "worker_lost"
        assert failed.error.message == "The training worker stopped responding (no heartbeat for 2 seconds)."
        assert identity.attempt_id in executor.stopped

        failed = await trainer.wait_for(ORG, never_started.id, job_pb2.JOB_STATUS_FAILED)
        assert failed.error.code == "worker_lost"
        assert failed.error.message == "The training worker did not start within 1 seconds."
