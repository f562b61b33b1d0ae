"""A fine-tune from start to finish over real gRPC, with a worker launched by the local executor.

This is the "done when" of the trainer: a job on tailor-tiny goes validating_files ->
queued -> running -> succeeded, its events and checkpoints list newest first, and its
model resolves to an adapter in the object store.

What is checked holds for any worker that keeps the contract, so the test runs with
each command of ``WORKER_COMMANDS``: the fake worker (fast, scriptable failures) and the
real training worker (it trains tailor-tiny on the CPU).
"""

from __future__ import annotations

import json
import re

import grpc
import pytest

from services.common.object_store import open_object_store
from services.trainer.config import TrainerSettings
from tailor.trainer.v1 import job_pb2
from tailor.trainer.v1 import model_registry_service_pb2 as registry_pb2
from tests.integration.trainer.conftest import ORG
from tests.integration.trainer.harness import FAKE_WORKER_COMMAND, FakeDataset, TrainerClient, refusal

REAL_WORKER_COMMAND = "python -m services.trainer.worker"
WORKER_COMMANDS = [FAKE_WORKER_COMMAND, REAL_WORKER_COMMAND]
EPOCHS = 4  # one more than the checkpoints kept, so one is dropped
CHECKPOINT_CREATED = re.compile(r"Checkpoint created at step (\d+)")


@pytest.fixture(params=WORKER_COMMANDS, ids=["fake-worker", "real-worker"])
def worker_command(request: pytest.FixtureRequest) -> str:
    return request.param


async def test_a_job_runs_from_validation_to_a_servable_model(
    trainer: TrainerClient, files: FakeDataset, settings: TrainerSettings
) -> None:
    training_file = files.add_file(ORG)
    validation_file = files.add_file(ORG, examples=5)
    created = await trainer.create(
        ORG,
        training_file=training_file,
        validation_file=validation_file,
        suffix="pirate",
        method=job_pb2.Method(hyperparameters=job_pb2.Hyperparameters(n_epochs=EPOCHS)),
        metadata={"team": "a"},
    )
    assert created.status == job_pb2.JOB_STATUS_VALIDATING_FILES
    assert created.id.startswith("ftjob-") and created.seed >= 0
    assert not created.fine_tuned_model and not created.HasField("finished_at")

    job = await trainer.wait_for(ORG, created.id, job_pb2.JOB_STATUS_SUCCEEDED, timeout=300)

    assert job.fine_tuned_model.startswith(f"ft:tailor-tiny:{ORG}:pirate:")
    assert len(job.fine_tuned_model.rsplit(":", 1)[1]) == 8
    assert job.trained_tokens > 0 and job.finished_at >= job.created_at
    assert not job.HasField("estimated_finish") and not job.HasField("error")
    assert job.result_files and job.result_files[0] in files.contents
    # "auto" hyperparameters were resolved by the worker and written back; the given one kept.
    hyperparameters = job.method.hyperparameters
    assert hyperparameters.n_epochs == EPOCHS
    assert hyperparameters.batch_size >= 1 and hyperparameters.learning_rate_multiplier > 0
    assert hyperparameters.lora_rank > 0

    messages = await trainer.messages(ORG, job.id)
    expected_in_order = [
        f"Validating training file: {training_file}",
        "Files validated, moving job to queued state",
        "Fine-tuning job started",
        f"New fine-tuned model created: {job.fine_tuned_model}",
        "The job has successfully completed",
    ]
    positions = [messages.index(message) for message in expected_in_order]
    assert positions == sorted(positions), messages
    assert any(message.startswith("Step ") for message in messages)

    events = await trainer.events(ORG, job.id)
    assert events[0].message == "The job has successfully completed"  # newest first
    metrics_events = [e for e in events if e.type == job_pb2.EVENT_TYPE_METRICS]
    assert metrics_events and metrics_events[0].metrics.step > metrics_events[-1].metrics.step

    # One checkpoint per epoch, listed newest first; only the last three are kept.
    created_steps = [int(m[1]) for m in map(CHECKPOINT_CREATED.fullmatch, messages) if m]
    assert len(created_steps) == EPOCHS
    checkpoints = await trainer.checkpoints(ORG, job.id)
    assert [c.step_number for c in checkpoints] == created_steps[::-1][:3]
    newest = checkpoints[0]
    assert newest.fine_tuned_model_checkpoint == f"{job.fine_tuned_model}:ckpt-step-{newest.step_number}"
    assert newest.metrics.step == newest.step_number and newest.id.startswith("ftckpt-")
    dropped = await refusal(trainer.resolve(ORG, f"{job.fine_tuned_model}:ckpt-step-{created_steps[0]}"))
    assert (dropped.status, dropped.code) == (grpc.StatusCode.NOT_FOUND, "model_not_found")

    model = await trainer.resolve(ORG, job.fine_tuned_model)
    assert model.kind == registry_pb2.MODEL_KIND_FINE_TUNED
    assert (model.base_model, model.owned_by, model.job_id) == ("tailor-tiny", ORG, job.id)
    store = open_object_store(settings)
    config = json.loads(await store.get_bytes(model.adapter_uri + "adapter_config.json"))
    assert config["r"] == model.lora_rank
    # the modules the worker adapted travel with the registry entry, checkpoints included
    assert list(model.lora_target_modules) == sorted(config["target_modules"]) != []
    assert await store.exists(model.adapter_uri + "adapter_model.safetensors")
    checkpoint_model = await trainer.resolve(ORG, newest.fine_tuned_model_checkpoint)
    assert checkpoint_model.kind == registry_pb2.MODEL_KIND_CHECKPOINT
    assert checkpoint_model.step_number == newest.step_number
    assert checkpoint_model.lora_target_modules == model.lora_target_modules
    assert await store.exists(checkpoint_model.adapter_uri + "adapter_config.json")
    # The dropped checkpoint's objects went with it.
    remaining = [stored.key async for stored in store.list(f"orgs/{ORG}/jobs/{job.id}/checkpoints/")]
    assert remaining and not any(f"/step-{created_steps[0]}/" in key for key in remaining)
    await store.close()
