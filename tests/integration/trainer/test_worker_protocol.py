"""The worker progress contract, played by the test: what the trainer takes, refuses and answers.

The trainer's executor here starts nothing; the test calls WorkerService the way a
worker launched for an attempt would, so every answer of the contract can be checked
exactly: the plan, directives after cancel and pause, refusals of stale attempts,
foreign organizations and finished jobs.
"""

from __future__ import annotations

import grpc

import tailor.trainer.v1.model_registry_service_pb2 as registry_pb2
import tailor.trainer.v1.trainer_service_pb2 as trainer_pb2
import tailor.trainer.v1.worker_service_pb2 as worker_pb2
from services.common.base_models import resolve_base_model
from services.common.grpc_client import rpc_error
from services.common.tenancy import call_context
from services.trainer.config import TrainerSettings
from tailor.trainer.v1 import job_pb2
from tests.integration.trainer.conftest import ORG, OTHER_ORG
from tests.integration.trainer.harness import (
    FakeDataset,
    PlayedWorker,
    RecordingExecutor,
    TrainerClient,
    eventually,
    refusal,
)

CONTINUE = worker_pb2.WORKER_DIRECTIVE_CONTINUE
CANCEL = worker_pb2.WORKER_DIRECTIVE_CANCEL
PAUSE = worker_pb2.WORKER_DIRECTIVE_PAUSE


async def launched_job(
    trainer: TrainerClient, files: FakeDataset, executor: RecordingExecutor, **fields: object
) -> tuple[job_pb2.Job, PlayedWorker]:
    job = await trainer.create(ORG, training_file=files.add_file(ORG), **fields)
    return job, PlayedWorker(trainer, await executor.launched(job.id), ORG)


async def test_the_plan_tells_the_worker_everything_it_needs(
    scripted_trainer: TrainerClient,
    files: FakeDataset,
    executor: RecordingExecutor,
    settings: TrainerSettings,
) -> None:
    job, worker = await launched_job(scripted_trainer, files, executor, suffix="s")
    environment = executor.environments[-1]
    assert environment["TAILOR_WORKER_JOB_ID"] == job.id
    assert environment["TAILOR_WORKER_ATTEMPT_ID"] == worker.identity.attempt_id
    assert environment["TAILOR_WORKER_ORGANIZATION"] == ORG
    assert environment["TAILOR_DATA_DIR"] == str(settings.data_dir)
    assert environment["TAILOR_DATASET_ADDR"] == settings.dataset_addr
    assert environment["TAILOR_TRAINER_ADDR"].startswith("127.0.0.1:")

    plan = await worker.claim()
    assert plan.job.id == job.id and plan.job.status == job_pb2.JOB_STATUS_RUNNING
    assert (plan.base_model, plan.max_seq_length) == ("tailor-tiny", 512)
    assert plan.base_model_source == resolve_base_model("tailor-tiny", settings, build=False).location
    assert plan.base_learning_rate > 0
    assert plan.output_prefix == f"orgs/{ORG}/jobs/{job.id}/"
    assert (plan.resume_from_uri, plan.initial_adapter_uri) == ("", "")
    assert plan.heartbeat_interval_s == settings.trainer_heartbeat_interval_s
    assert (await worker.claim()).job.id == job.id  # a repeated claim gets the same plan

    assert (
        await worker.started(total_steps=6, n_epochs=2, batch_size=4, learning_rate_multiplier=1.0)
        == CONTINUE
    )
    assert await worker.step(1) == CONTINUE
    assert await worker.step(2) == CONTINUE
    running = await scripted_trainer.job(ORG, job.id)
    assert running.method.hyperparameters.n_epochs == 2 and running.method.hyperparameters.batch_size == 4
    assert running.HasField("estimated_finish") and running.estimated_finish >= running.created_at
    messages = await scripted_trainer.messages(ORG, job.id)
    assert "Fine-tuning job started" in messages
    assert "Step 2/6: training loss=0.5" in messages  # worded by the trainer when the worker gave no text


async def test_success_registers_the_model_and_the_checkpoints(
    scripted_trainer: TrainerClient, files: FakeDataset, executor: RecordingExecutor
) -> None:
    job, worker = await launched_job(scripted_trainer, files, executor)
    plan = await worker.claim()
    await worker.started()
    checkpoint = await worker.checkpoint(plan, 3)
    assert checkpoint.directive == CONTINUE
    assert checkpoint.checkpoint.fine_tuned_model_checkpoint.endswith(":ckpt-step-3")

    outside = await refusal(worker.checkpoint(worker_pb2.TrainingPlan(output_prefix=f"orgs/{OTHER_ORG}/"), 4))
    assert (outside.status, outside.param) == (grpc.StatusCode.INVALID_ARGUMENT, "adapter_uri")

    finished = await worker.succeeded(plan)
    assert finished.status == job_pb2.JOB_STATUS_SUCCEEDED
    assert (finished.trained_tokens, list(finished.result_files)) == (1234, ["file-results"])
    model = await scripted_trainer.resolve(ORG, finished.fine_tuned_model)
    assert model.adapter_uri == plan.output_prefix + "adapter/" and model.lora_rank == 8
    ckpt = await scripted_trainer.resolve(ORG, checkpoint.checkpoint.fine_tuned_model_checkpoint)
    assert ckpt.adapter_uri == plan.output_prefix + "checkpoints/step-3/adapter/"

    # Reports for a finished job are refused.
    late = await refusal(worker.step(4))
    assert late.status == grpc.StatusCode.FAILED_PRECONDITION

    # Training continues from the fine-tuned model: same base, its adapter as the start.
    executor.exit(worker.identity.attempt_id)
    continued, next_worker = await launched_job(
        scripted_trainer, files, executor, model=finished.fine_tuned_model
    )
    assert (continued.model, continued.base_model) == (finished.fine_tuned_model, "tailor-tiny")
    assert continued.method.hyperparameters.lora_rank == 8
    assert (await next_worker.claim()).initial_adapter_uri == model.adapter_uri


async def test_reports_of_another_attempt_or_organization_are_refused(
    scripted_trainer: TrainerClient, files: FakeDataset, executor: RecordingExecutor
) -> None:
    job, worker = await launched_job(scripted_trainer, files, executor)
    await worker.claim()

    stale = PlayedWorker(
        scripted_trainer, worker_pb2.WorkerIdentity(job_id=job.id, attempt_id="attempt-old"), ORG
    )
    error = await refusal(stale.step(1))
    assert (error.status, error.code) == (grpc.StatusCode.FAILED_PRECONDITION, "stale_attempt")

    foreign = PlayedWorker(scripted_trainer, worker.identity, OTHER_ORG)
    error = await refusal(foreign.step(1))
    assert error.status == grpc.StatusCode.NOT_FOUND
    error = await refusal(foreign.claim())
    assert error.status == grpc.StatusCode.NOT_FOUND


async def test_a_cancelled_job_tells_its_worker_to_stop_and_registers_nothing(
    scripted_trainer: TrainerClient, files: FakeDataset, executor: RecordingExecutor
) -> None:
    job, worker = await launched_job(scripted_trainer, files, executor)
    plan = await worker.claim()
    await worker.started()
    with call_context(ORG, None):
        cancelled = (await scripted_trainer.jobs.CancelJob(trainer_pb2.CancelJobRequest(job_id=job.id))).job
    assert cancelled.status == job_pb2.JOB_STATUS_CANCELLED and cancelled.HasField("finished_at")
    assert worker.identity.attempt_id in executor.stopped  # the worker is stopped at once

    assert await worker.step(2) == CANCEL
    for late_report in (worker.checkpoint(plan, 3), worker.succeeded(plan)):
        error = await refusal(late_report)
        assert error.status == grpc.StatusCode.FAILED_PRECONDITION
    with call_context(ORG, None):
        models = (await scripted_trainer.models.ListModels(registry_pb2.ListModelsRequest())).models
    assert [m.id for m in models] == ["tailor-tiny"]
    assert await scripted_trainer.checkpoints(ORG, job.id) == []

    again = await refusal(scripted_trainer.jobs.CancelJob(trainer_pb2.CancelJobRequest(job_id=job.id)))
    assert again.status == grpc.StatusCode.UNAUTHENTICATED  # no organization: refused before anything
    with call_context(ORG, None):
        again = await refusal(scripted_trainer.jobs.CancelJob(trainer_pb2.CancelJobRequest(job_id=job.id)))
    assert again.status == grpc.StatusCode.FAILED_PRECONDITION  # the gateway answers 400, never 409


async def test_pause_checkpoints_and_resume_continues_from_it(
    scripted_trainer: TrainerClient, files: FakeDataset, executor: RecordingExecutor
) -> None:
    job, worker = await launched_job(scripted_trainer, files, executor)
    plan = await worker.claim()
    await worker.started()
    await worker.step(1)
    with call_context(ORG, None):
        paused = (await scripted_trainer.jobs.PauseJob(trainer_pb2.PauseJobRequest(job_id=job.id))).job
    assert paused.status == job_pb2.JOB_STATUS_PAUSED
    assert await worker.step(2) == PAUSE
    assert (await worker.checkpoint(plan, 2)).directive == PAUSE  # the pause checkpoint is taken
    executor.exit(worker.identity.attempt_id)
    await eventually(lambda: _stale(worker), timeout=10, what="the trainer to let go of the exited worker")

    with call_context(ORG, None):
        error = await refusal(scripted_trainer.jobs.PauseJob(trainer_pb2.PauseJobRequest(job_id=job.id)))
        assert error.status == grpc.StatusCode.FAILED_PRECONDITION
        resumed = (await scripted_trainer.jobs.ResumeJob(trainer_pb2.ResumeJobRequest(job_id=job.id))).job
        assert resumed.status == job_pb2.JOB_STATUS_QUEUED
        error = await refusal(scripted_trainer.jobs.ResumeJob(trainer_pb2.ResumeJobRequest(job_id=job.id)))
        assert error.status == grpc.StatusCode.FAILED_PRECONDITION

    next_worker = PlayedWorker(scripted_trainer, await executor.launched(job.id, count=2), ORG)
    assert next_worker.identity.attempt_id != worker.identity.attempt_id
    next_plan = await next_worker.claim()
    assert next_plan.resume_from_uri == plan.output_prefix + "checkpoints/step-2/state/"
    assert (await refusal(worker.step(3))).code == "stale_attempt"
    messages = await scripted_trainer.messages(ORG, job.id)
    expected_in_order = [
        "Fine-tuning job paused",
        "Checkpoint created at step 2",
        "Fine-tuning job resumed",
        "Fine-tuning job started from the checkpoint at step 2",
    ]
    positions = [messages.index(message) for message in expected_in_order]
    assert positions == sorted(positions), messages


async def test_a_job_resumed_before_its_pause_checkpoint_continues_from_that_checkpoint(
    scripted_trainer: TrainerClient, files: FakeDataset, executor: RecordingExecutor
) -> None:
    job, worker = await launched_job(scripted_trainer, files, executor)
    plan = await worker.claim()
    await worker.started()
    await worker.step(1)
    with call_context(ORG, None):
        await scripted_trainer.jobs.PauseJob(trainer_pb2.PauseJobRequest(job_id=job.id))
        resumed = (await scripted_trainer.jobs.ResumeJob(trainer_pb2.ResumeJobRequest(job_id=job.id))).job
    assert resumed.status == job_pb2.JOB_STATUS_QUEUED
    # The pausing worker is still the job's: it finishes its pause, and its checkpoint counts.
    assert await worker.step(2) == PAUSE
    assert (await worker.checkpoint(plan, 2)).directive == PAUSE
    assert [launch.job_id for launch in executor.launches].count(job.id) == 1, "one worker at a time"
    executor.exit(worker.identity.attempt_id)

    next_worker = PlayedWorker(scripted_trainer, await executor.launched(job.id, count=2), ORG)
    next_plan = await next_worker.claim()
    assert next_plan.resume_from_uri == plan.output_prefix + "checkpoints/step-2/state/"
    assert (await refusal(worker.step(3))).code == "stale_attempt"
    messages = await scripted_trainer.messages(ORG, job.id)
    expected_in_order = [
        "Fine-tuning job paused",
        "Fine-tuning job resumed",
        "Checkpoint created at step 2",
        "The paused worker has stopped; the job continues from the checkpoint at step 2.",
        "Fine-tuning job started from the checkpoint at step 2",
    ]
    positions = [messages.index(message) for message in expected_in_order]
    assert positions == sorted(positions), messages
    # The pause was no failed attempt: the one retry is still there.
    assert (await next_worker.failed("out_of_memory", retryable=True)).status == job_pb2.JOB_STATUS_QUEUED


async def _stale(worker: PlayedWorker) -> bool | None:
    """True once the trainer refuses the worker's reports as those of a superseded attempt."""
    try:
        await worker.heartbeat()
    except grpc.aio.AioRpcError as error:
        assert rpc_error(error).code == "stale_attempt", error
        return True
    return None


async def test_pausing_a_job_not_yet_claimed_stops_its_worker(
    scripted_trainer: TrainerClient, files: FakeDataset, executor: RecordingExecutor
) -> None:
    job, worker = await launched_job(scripted_trainer, files, executor)
    with call_context(ORG, None):
        await scripted_trainer.jobs.PauseJob(trainer_pb2.PauseJobRequest(job_id=job.id))
    assert worker.identity.attempt_id in executor.stopped
    error = await refusal(worker.claim())
    assert (error.status, error.code) == (grpc.StatusCode.FAILED_PRECONDITION, "job_paused")


async def test_a_failure_report_fails_the_job_or_retries_it_once(
    scripted_trainer: TrainerClient, files: FakeDataset, executor: RecordingExecutor
) -> None:
    bad_file, worker = await launched_job(scripted_trainer, files, executor)
    await worker.claim()
    failed = await worker.failed("invalid_training_file", retryable=False, param="training_file")
    assert failed.status == job_pb2.JOB_STATUS_FAILED
    assert (failed.error.code, failed.error.param) == ("invalid_training_file", "training_file")
    assert (await scripted_trainer.events(ORG, bad_file.id))[0].level == job_pb2.EVENT_LEVEL_ERROR

    flaky, worker = await launched_job(scripted_trainer, files, executor)
    await worker.claim()
    retried = await worker.failed("out_of_memory", retryable=True)
    assert retried.status == job_pb2.JOB_STATUS_QUEUED
    executor.exit(worker.identity.attempt_id)
    second = PlayedWorker(scripted_trainer, await executor.launched(flaky.id, count=2), ORG)
    await second.claim()
    final = await second.failed("out_of_memory", retryable=True)  # the one retry is spent
    assert final.status == job_pb2.JOB_STATUS_FAILED and final.error.code == "out_of_memory"
