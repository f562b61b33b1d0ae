"""Pausing a job whose files are still being validated, and resuming it where it was.

The scheduler checks a job's files with the dataset service outside any transaction, so a
pause can land while a check is in flight. These tests hold the stand-in dataset's answer
(:meth:`FakeDataset.hold_answers`) to pause at exactly that moment, and show that the
check's verdict never overrides the pause.
"""

from __future__ import annotations

import grpc

import tailor.trainer.v1.trainer_service_pb2 as trainer_pb2
from services.common.tenancy import call_context
from tailor.dataset.v1 import dataset_service_pb2 as dataset_pb2
from tailor.trainer.v1 import job_pb2
from tests.integration.trainer.conftest import ORG
from tests.integration.trainer.harness import FakeDataset, TrainerClient, eventually, refusal

VALIDATING = job_pb2.JOB_STATUS_VALIDATING_FILES
PAUSED = job_pb2.JOB_STATUS_PAUSED
QUEUED = job_pb2.JOB_STATUS_QUEUED


async def pause(trainer: TrainerClient, job_id: str) -> job_pb2.Job:
    with call_context(ORG, None):
        return (await trainer.jobs.PauseJob(trainer_pb2.PauseJobRequest(job_id=job_id))).job


async def resume(trainer: TrainerClient, job_id: str) -> job_pb2.Job:
    with call_context(ORG, None):
        return (await trainer.jobs.ResumeJob(trainer_pb2.ResumeJobRequest(job_id=job_id))).job


async def a_job_still_validating(trainer: TrainerClient, files: FakeDataset) -> tuple[job_pb2.Job, str]:
    pending = files.add_file(ORG, status=dataset_pb2.FILE_STATUS_UPLOADED)
    job = await trainer.create(ORG, training_file=pending)
    assert job.status == VALIDATING
    return job, pending


async def the_scheduler_asks_again(files: FakeDataset, asked_before: int) -> None:
    async def asked() -> bool | None:
        return True if len(files.lookups) > asked_before else None

    await eventually(asked, timeout=10, what="the scheduler to check the files again")


async def test_a_job_paused_while_validating_waits_and_resumes_into_validation(
    scripted_trainer: TrainerClient, files: FakeDataset
) -> None:
    job, pending = await a_job_still_validating(scripted_trainer, files)
    assert (await pause(scripted_trainer, job.id)).status == PAUSED

    # Its files finish processing during the pause: the job stays paused.
    files.finish_processing(ORG, pending)
    asked = len(files.lookups)
    again = await refusal(pause(scripted_trainer, job.id))
    assert (again.status, again.code) == (grpc.StatusCode.FAILED_PRECONDITION, "job_not_pausable")
    assert "already paused" in again.message
    assert (await scripted_trainer.job(ORG, job.id)).status == PAUSED

    # Resumed, it is back in validation, and the next check queues it.
    assert (await resume(scripted_trainer, job.id)).status == VALIDATING
    await scripted_trainer.wait_for(ORG, job.id, QUEUED)
    assert len(files.lookups) > asked, "resuming into validation checks the files again"
    messages = await scripted_trainer.messages(ORG, job.id)
    assert messages[-3:] == [
        "Fine-tuning job paused",
        "Fine-tuning job resumed",
        "Files validated, moving job to queued state",
    ]


async def test_files_found_valid_as_the_pause_lands_keep_it_paused_then_queue_it_on_resume(
    scripted_trainer: TrainerClient, files: FakeDataset
) -> None:
    job, pending = await a_job_still_validating(scripted_trainer, files)
    files.finish_processing(ORG, pending)
    asked = len(files.lookups)
    release = files.hold_answers()
    await the_scheduler_asks_again(files, asked)  # the check is in flight, its answer held

    assert (await pause(scripted_trainer, job.id)).status == PAUSED
    release.set()  # the check now finds the files valid

    async def validated_while_paused() -> list[str] | None:
        messages = await scripted_trainer.messages(ORG, job.id)
        return messages if messages[-1] == "Files validated; the job is queued when resumed" else None

    await eventually(validated_while_paused, timeout=10, what="the held check's verdict")
    assert (await scripted_trainer.job(ORG, job.id)).status == PAUSED, "the verdict must not undo the pause"

    asked = len(files.lookups)
    assert (await resume(scripted_trainer, job.id)).status == QUEUED, "validation was already done"
    assert len(files.lookups) == asked


async def test_files_found_invalid_as_the_pause_lands_fail_the_job_only_once_resumed(
    scripted_trainer: TrainerClient, files: FakeDataset
) -> None:
    # Another job still validating keeps the scheduler asking, pass after pass.
    await a_job_still_validating(scripted_trainer, files)
    job, pending = await a_job_still_validating(scripted_trainer, files)
    files.finish_processing(ORG, pending, examples=3)  # too few: invalid
    asked = len(files.lookups)
    release = files.hold_answers()
    await the_scheduler_asks_again(files, asked)

    assert (await pause(scripted_trainer, job.id)).status == PAUSED
    release.set()
    # Two more lookups: the pass whose check was held has ended, its verdict not applied.
    await the_scheduler_asks_again(files, len(files.lookups) + 1)
    assert (await scripted_trainer.job(ORG, job.id)).status == PAUSED

    assert (await resume(scripted_trainer, job.id)).status == VALIDATING
    failed = await scripted_trainer.wait_for(ORG, job.id, job_pb2.JOB_STATUS_FAILED)
    assert (failed.error.code, failed.error.param) == ("invalid_training_file", "training_file")
