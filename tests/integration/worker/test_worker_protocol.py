"""The worker against a fake trainer and dataset service over real gRPC: the agreed RPC sequence,
directives, failures and what ends up in the object store."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from peft import PeftModel

from services.common.base_models import BaseModelSpec
from services.common.object_store import open_object_store
from services.common.settings import CommonSettings
from services.trainer.worker.data import load_examples
from services.trainer.worker.lora import check_vllm_compatible
from services.trainer.worker.models import choose_placement, load_base_model, load_tokenizer
from services.trainer.worker.run import run_worker
from services.trainer.worker.training import TrainingLoop
from tailor.dataset.v1 import dataset_service_pb2 as dataset_pb
from tailor.trainer.v1 import job_pb2
from tests.integration.worker.conftest import (
    JOB_ID,
    ORGANIZATION,
    WorkerSettingsFactory,
    preference_examples,
    secret_examples,
    training_plan,
)
from tests.integration.worker.fakes import CANCEL, CONTINUE, PAUSE, FakeServices
from tests.support.processes import free_port

PREFIX = f"orgs/{ORGANIZATION}/jobs/{JOB_ID}/"
REPO_ROOT = Path(__file__).resolve().parents[3]


async def stored_keys(data_dir: Path) -> list[str]:
    store = open_object_store(CommonSettings(data_dir=data_dir))
    try:
        return [stored.key async for stored in store.list(PREFIX)]
    finally:
        await store.close()


def file_tokens(tmp_path: Path, tailor_tiny_dir: Path, content: bytes, max_length: int = 512) -> int:
    """Tokens of a training file's examples as tailor-tiny's chat template renders them."""
    path = tmp_path / "counted.jsonl"
    path.write_bytes(content)
    tokenizer = load_tokenizer(str(tailor_tiny_dir))
    return load_examples(
        path, tokenizer, preference=False, max_length=max_length, file_param="training_file"
    ).num_tokens


@pytest.fixture
def slow_steps(monkeypatch: pytest.MonkeyPatch) -> Callable[[float], None]:
    """Makes every training step take at least the given seconds, as steps of a large model would."""

    def slow_down(seconds: float) -> None:
        train_step = TrainingLoop._train_step

        def slow_step(self: TrainingLoop, batch: Any) -> Any:
            time.sleep(seconds)
            return train_step(self, batch)

        monkeypatch.setattr(TrainingLoop, "_train_step", slow_step)

    return slow_down


async def test_a_job_trains_checkpoints_every_epoch_and_reports_in_the_agreed_order(
    tmp_path: Path, fakes: FakeServices, tailor_tiny_dir: Path, worker_settings: WorkerSettingsFactory
) -> None:
    training_bytes = fakes.datasets.add_jsonl("file-train", secret_examples(12))
    fakes.datasets.add_jsonl("file-valid", secret_examples(16)[12:])
    fakes.trainer.plan = training_plan(
        tailor_tiny_dir,
        hyperparameters=job_pb2.Hyperparameters(n_epochs=2),
        validation_file="file-valid",
        # the trainer's own path for the built-in model: the worker finds tailor-tiny in its data dir
        base_model_source="/trainer/data/models/tailor-tiny-v1",
    )
    data_dir = tmp_path / "data"

    exit_code = await run_worker(worker_settings(data_dir, fakes), handle_signals=False)

    trainer = fakes.trainer
    assert exit_code == 0
    reports = [method for method in trainer.methods() if method != "ReportEvents"]
    assert reports == ["ClaimJob", "ReportStarted", "ReportCheckpoint", "ReportCheckpoint", "ReportSucceeded"]
    assert trainer.methods()[-2] == "ReportEvents"  # the last events are sent before the outcome
    assert {call.organization for call in trainer.calls} == {ORGANIZATION}
    assert {call.request.worker.attempt_id for call in trainer.calls} == {"attempt-1"}

    # "auto" resolved and reported: 12 examples -> batch size 1; the rate at multiplier 1; tailor-tiny's rank
    (started,) = trainer.requests("ReportStarted")
    resolved = started.resolved_method.hyperparameters
    assert started.resolved_method.type == job_pb2.METHOD_TYPE_SUPERVISED
    assert (resolved.n_epochs, resolved.batch_size, resolved.learning_rate_multiplier) == (2, 1, 1.0)
    assert (resolved.lora_rank, resolved.lora_alpha, resolved.lora_dropout) == (8, 16.0, 0.0)
    assert (started.total_steps, started.training_examples) == (24, 12)

    checkpoints = trainer.requests("ReportCheckpoint")
    assert [(c.step_number, c.epoch) for c in checkpoints] == [(12, 1), (24, 2)]
    assert checkpoints[0].adapter_uri == f"{PREFIX}checkpoints/step-12/adapter/"
    assert checkpoints[0].state_uri == f"{PREFIX}checkpoints/step-12/state/"
    assert checkpoints[0].metrics.HasField("full_valid_loss") and checkpoints[0].lora_rank == 8

    (succeeded,) = trainer.requests("ReportSucceeded")
    assert succeeded.adapter_uri == f"{PREFIX}adapter/" and succeeded.lora_rank == 8
    keys = await stored_keys(data_dir)
    for adapter in (
        f"{PREFIX}checkpoints/step-12/adapter/",
        f"{PREFIX}checkpoints/step-24/adapter/",
        f"{PREFIX}adapter/",
    ):
        assert f"{adapter}adapter_config.json" in keys and f"{adapter}adapter_model.safetensors" in keys
    assert f"{PREFIX}checkpoints/step-12/state/training_state.pt" in keys

    # OpenAI's trained_tokens: every token of every (truncated) training example, once per epoch
    tokens_per_epoch = file_tokens(tmp_path, tailor_tiny_dir, training_bytes)
    assert succeeded.trained_tokens == 2 * tokens_per_epoch

    # the results file: uploaded as fine-tune-results, one row per step, validation where measured
    ((metadata, content, organization),) = fakes.datasets.uploads
    assert succeeded.result_files == ["file-results1"]
    assert (metadata.purpose, metadata.filename, organization) == (
        dataset_pb.FILE_PURPOSE_FINE_TUNE_RESULTS,
        "step_metrics.csv",
        ORGANIZATION,
    )
    rows = list(csv.DictReader(io.StringIO(content.decode())))
    assert [int(row["step"]) for row in rows] == list(range(1, 25))
    assert [int(row["step"]) for row in rows if row["valid_loss"]] == [5, 10, 12, 15, 20, 24]

    metrics = [event.metrics for event in trainer.metrics_events()]
    assert [m.step for m in metrics] == [5, 10, 12, 15, 20, 24]
    assert [m.step for m in metrics if m.HasField("full_valid_loss")] == [12, 24]
    assert all(m.total_steps == 24 and m.HasField("valid_mean_token_accuracy") for m in metrics)
    assert metrics[-1].train_loss < metrics[0].train_loss
    assert trainer.messages()[0] == f"Training file: 12 chat examples, {tokens_per_epoch} tokens"
    assert trainer.messages()[1].startswith("Validation file: 4 chat examples, ")
    assert trainer.requests("ReportEvents")[-1].current_step == 24


async def test_a_base_without_overrides_trains_with_its_familys_defaults_and_says_so(
    tmp_path: Path, fakes: FakeServices, tailor_tiny_dir: Path, worker_settings: WorkerSettingsFactory
) -> None:
    # tailor-tiny's directory as a plain entry: nothing but the source, so the llama family decides
    fakes.datasets.add_jsonl("file-train", secret_examples(4))
    plan = training_plan(tailor_tiny_dir, hyperparameters=job_pb2.Hyperparameters(n_epochs=1, batch_size=4))
    plan.base_model = plan.job.base_model = "plain-llama"
    plan.base_learning_rate, plan.max_seq_length = 0.0, 0  # a trainer that could not read the family
    fakes.trainer.plan = plan
    settings = worker_settings(
        tmp_path / "data", fakes, base_models={"plain-llama": BaseModelSpec(source=str(tailor_tiny_dir))}
    )

    assert await run_worker(settings, handle_signals=False) == 0

    (started,) = fakes.trainer.requests("ReportStarted")
    resolved = started.resolved_method.hyperparameters
    assert (resolved.lora_rank, resolved.lora_alpha) == (16, 32.0)
    llama = ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]
    assert list(resolved.lora_target_modules) == llama
    messages = fakes.trainer.messages()
    assert (
        "Base model plain-llama (family llama, model_type llama): LoRA rank 16, alpha 32 on "
        f"{', '.join(llama)}; learning rate 0.0002; max sequence length 2048"
    ) in messages
    assert (
        "Memory: gradient checkpointing off, micro-batches of up to 16384 tokens (8 sequences of 2048), "
        "for 1.2M parameters on cpu"
    ) in messages
    assert fakes.trainer.methods()[-1] == "ReportSucceeded"


async def test_target_modules_the_model_lacks_fail_the_job_instead_of_a_smaller_adapter(
    tmp_path: Path, fakes: FakeServices, tailor_tiny_dir: Path, worker_settings: WorkerSettingsFactory
) -> None:
    fakes.datasets.add_jsonl("file-train", secret_examples(4))
    plan = training_plan(tailor_tiny_dir)
    plan.base_model = plan.job.base_model = "misconfigured"
    fakes.trainer.plan = plan
    # Phi-3's fused names on a Llama: PEFT would adapt o_proj and down_proj only, silently
    spec = BaseModelSpec(source=str(tailor_tiny_dir), lora_target_modules=("qkv_proj", "o_proj", "down_proj"))
    settings = worker_settings(tmp_path / "data", fakes, base_models={"misconfigured": spec})

    assert await run_worker(settings, handle_signals=False) == 0

    assert "ReportStarted" not in fakes.trainer.methods()
    (failed,) = fakes.trainer.requests("ReportFailed")
    assert (failed.error.code, failed.retryable) == ("base_model_unavailable", False)
    assert "has no modules named qkv_proj" in failed.error.message


async def test_the_final_adapter_loads_in_peft_and_passes_vllms_rules(
    tmp_path: Path, fakes: FakeServices, tailor_tiny_dir: Path, worker_settings: WorkerSettingsFactory
) -> None:
    fakes.datasets.add_jsonl("file-train", secret_examples(8))
    fakes.trainer.plan = training_plan(
        tailor_tiny_dir, hyperparameters=job_pb2.Hyperparameters(n_epochs=1, batch_size=4)
    )
    data_dir = tmp_path / "data"

    assert await run_worker(worker_settings(data_dir, fakes), handle_signals=False) == 0

    store = open_object_store(CommonSettings(data_dir=data_dir))
    local = tmp_path / "adapter"
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        await store.get_file(f"{PREFIX}adapter/{name}", local / name)
    await store.close()
    check_vllm_compatible(local, max_rank=64)
    assert json.loads((local / "adapter_config.json").read_text())["base_model_name_or_path"] == "tailor-tiny"
    PeftModel.from_pretrained(
        load_base_model(str(tailor_tiny_dir), choose_placement("cpu", "float32")), local
    )


async def test_an_invalid_training_file_fails_the_job_naming_the_line(
    tmp_path: Path, fakes: FakeServices, tailor_tiny_dir: Path, worker_settings: WorkerSettingsFactory
) -> None:
    fakes.datasets.add_jsonl(
        "file-train", [*secret_examples(2), '{"messages": [{"role": "user", "content": "Hi"}]}']
    )
    fakes.trainer.plan = training_plan(tailor_tiny_dir)

    assert await run_worker(worker_settings(tmp_path / "data", fakes), handle_signals=False) == 0

    assert "ReportStarted" not in fakes.trainer.methods()
    (failed,) = fakes.trainer.requests("ReportFailed")
    assert (failed.error.code, failed.error.param, failed.retryable) == (
        "invalid_training_file",
        "training_file",
        False,
    )
    assert "line 3:" in failed.error.message and "no assistant message" in failed.error.message


async def test_long_examples_are_truncated_with_one_event_naming_the_lines_and_their_tokens(
    tmp_path: Path, fakes: FakeServices, tailor_tiny_dir: Path, worker_settings: WorkerSettingsFactory
) -> None:
    long_reply = {
        "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "word " * 100}]
    }
    records = [*secret_examples(4), long_reply, long_reply]
    fakes.datasets.add_jsonl("file-train", records)
    fakes.trainer.plan = training_plan(tailor_tiny_dir, hyperparameters=job_pb2.Hyperparameters(n_epochs=1))
    tokens = file_tokens(tmp_path, tailor_tiny_dir, json.dumps(long_reply).encode() + b"\n")

    assert (
        await run_worker(
            worker_settings(tmp_path / "data", fakes, worker_max_seq_length=48), handle_signals=False
        )
        == 0
    )

    warnings = [event.message for event in fakes.trainer.events() if event.level == job_pb2.EVENT_LEVEL_WARN]
    assert warnings == [
        "Training file: 2 examples are longer than the max sequence length of 48 tokens and truncated to it: "
        f"line 5: {tokens} tokens, line 6: {tokens} tokens"
    ]
    assert fakes.trainer.methods()[-1] == "ReportSucceeded"


async def test_examples_longer_than_the_models_context_fail_the_job_naming_the_lines(
    tmp_path: Path, fakes: FakeServices, tailor_tiny_dir: Path, worker_settings: WorkerSettingsFactory
) -> None:
    # tailor-tiny reads 2048 tokens (max_position_embeddings); these are ~2,500 each
    too_long = {
        "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "word " * 2500}]
    }
    fakes.datasets.add_jsonl("file-train", [*secret_examples(3), too_long, *secret_examples(2), too_long])
    fakes.trainer.plan = training_plan(tailor_tiny_dir)
    tokens = file_tokens(tmp_path, tailor_tiny_dir, json.dumps(too_long).encode() + b"\n", max_length=4096)
    assert tokens > 2048

    assert await run_worker(worker_settings(tmp_path / "data", fakes), handle_signals=False) == 0

    assert "ReportStarted" not in fakes.trainer.methods()
    (failed,) = fakes.trainer.requests("ReportFailed")
    assert (failed.error.code, failed.error.param, failed.retryable) == (
        "invalid_training_file",
        "training_file",
        False,
    )
    assert failed.error.message == (
        "The training file is invalid: 2 examples are longer than the model's context of 2048 tokens "
        f"(line 4: {tokens} tokens, line 7: {tokens} tokens); shorten or split them."
    )


async def test_a_dpo_job_trains_on_preference_pairs_with_beta_resolved(
    tmp_path: Path, fakes: FakeServices, tailor_tiny_dir: Path, worker_settings: WorkerSettingsFactory
) -> None:
    fakes.datasets.add_jsonl("file-train", preference_examples(8))
    fakes.trainer.plan = training_plan(
        tailor_tiny_dir,
        method_type=job_pb2.METHOD_TYPE_DPO,
        hyperparameters=job_pb2.Hyperparameters(n_epochs=1, batch_size=4),
    )

    assert await run_worker(worker_settings(tmp_path / "data", fakes), handle_signals=False) == 0

    (started,) = fakes.trainer.requests("ReportStarted")
    assert started.resolved_method.type == job_pb2.METHOD_TYPE_DPO
    assert started.resolved_method.hyperparameters.beta == pytest.approx(0.1)
    assert fakes.trainer.methods()[-1] == "ReportSucceeded"
    assert "reward margin=" in fakes.trainer.metrics_events()[-1].message


async def test_cancel_stops_training_at_once_and_uploads_nothing_more(
    tmp_path: Path,
    fakes: FakeServices,
    tailor_tiny_dir: Path,
    worker_settings: WorkerSettingsFactory,
    slow_steps: Callable[[float], None],
) -> None:
    slow_steps(0.1)
    fakes.datasets.add_jsonl("file-train", secret_examples(12))
    fakes.trainer.plan = training_plan(tailor_tiny_dir, hyperparameters=job_pb2.Hyperparameters(n_epochs=3))
    fakes.trainer.directive = lambda method, request: (
        CANCEL if method == "ReportEvents" and request.current_step >= 5 else CONTINUE
    )
    data_dir = tmp_path / "data"

    assert await run_worker(worker_settings(data_dir, fakes), handle_signals=False) == 0

    methods = fakes.trainer.methods()
    assert not {"ReportCheckpoint", "ReportSucceeded", "ReportFailed"} & set(methods)
    assert max(request.current_step for request in fakes.trainer.requests("ReportEvents")) < 12
    assert await stored_keys(data_dir) == []
    assert fakes.datasets.uploads == []


async def test_pause_saves_a_checkpoint_and_a_new_attempt_resumes_to_the_same_end(
    tmp_path: Path,
    fakes: FakeServices,
    tailor_tiny_dir: Path,
    worker_settings: WorkerSettingsFactory,
    slow_steps: Callable[[float], None],
) -> None:
    slow_steps(0.1)
    training_bytes = fakes.datasets.add_jsonl("file-train", secret_examples(12))
    fakes.trainer.plan = training_plan(tailor_tiny_dir, hyperparameters=job_pb2.Hyperparameters(n_epochs=2))
    fakes.trainer.directive = lambda method, request: (
        PAUSE if method == "ReportEvents" and request.current_step >= 5 else CONTINUE
    )
    data_dir = tmp_path / "data"

    assert await run_worker(worker_settings(data_dir, fakes), handle_signals=False) == 0

    (checkpoint,) = fakes.trainer.requests("ReportCheckpoint")
    assert (
        5 <= checkpoint.step_number < 12 and checkpoint.epoch == 1
    )  # mid-epoch: the pause, not an epoch end
    assert "ReportSucceeded" not in fakes.trainer.methods()

    # the trainer resumes the job with a new attempt from the checkpoint's state
    first_attempt = fakes.trainer.calls
    fakes.trainer.calls = []
    fakes.trainer.directive = lambda method, request: CONTINUE
    fakes.trainer.plan = training_plan(
        tailor_tiny_dir,
        hyperparameters=job_pb2.Hyperparameters(n_epochs=2),
        resume_from_uri=checkpoint.state_uri,
    )
    assert (
        await run_worker(
            worker_settings(data_dir, fakes, worker_attempt_id="attempt-2"), handle_signals=False
        )
        == 0
    )

    (started,) = fakes.trainer.requests("ReportStarted")
    assert started.total_steps == 24
    assert [c.step_number for c in fakes.trainer.requests("ReportCheckpoint")] == [12, 24]
    assert any(
        message == f"Resuming from the checkpoint at step {checkpoint.step_number}"
        for message in fakes.trainer.messages()
    )
    (succeeded,) = fakes.trainer.requests("ReportSucceeded")
    rows = list(csv.DictReader(io.StringIO(fakes.datasets.uploads[0][1].decode())))
    assert [int(row["step"]) for row in rows] == list(range(1, 25))  # the history before the pause is kept
    paused_metrics = [
        e.metrics
        for c in first_attempt
        if c.method == "ReportEvents"
        for e in c.request.events
        if e.metrics.step
    ]
    assert float(rows[4]["train_loss"]) == pytest.approx(paused_metrics[0].train_loss)
    assert succeeded.trained_tokens == 2 * file_tokens(tmp_path, tailor_tiny_dir, training_bytes)


async def test_a_refused_report_ends_the_worker_quietly(
    tmp_path: Path, fakes: FakeServices, tailor_tiny_dir: Path, worker_settings: WorkerSettingsFactory
) -> None:
    fakes.datasets.add_jsonl("file-train", secret_examples(4))
    fakes.trainer.plan = training_plan(tailor_tiny_dir)
    fakes.trainer.refuse = {"ReportStarted"}

    assert await run_worker(worker_settings(tmp_path / "data", fakes), handle_signals=False) == 0

    assert not {"ReportFailed", "ReportCheckpoint", "ReportSucceeded"} & set(fakes.trainer.methods())


async def test_an_object_store_outage_fails_the_job_as_retryable(
    tmp_path: Path, fakes: FakeServices, tailor_tiny_dir: Path, worker_settings: WorkerSettingsFactory
) -> None:
    fakes.datasets.add_jsonl("file-train", secret_examples(4))
    fakes.trainer.plan = training_plan(tailor_tiny_dir)
    # The store is the trainer's: the worker learns of the outage from UploadCheckpoint.
    fakes.trainer.store_settings = CommonSettings(
        data_dir=tmp_path / "data", object_store_endpoint=f"127.0.0.1:{free_port()}"
    )
    settings = worker_settings(tmp_path / "data", fakes)

    assert await run_worker(settings, handle_signals=False) == 0

    (failed,) = fakes.trainer.requests("ReportFailed")
    assert (failed.error.code, failed.retryable) == ("object_store_unavailable", True)
    assert "object store" in failed.error.message


async def test_an_unreachable_dataset_service_fails_the_job_as_retryable(
    tmp_path: Path, fakes: FakeServices, tailor_tiny_dir: Path, worker_settings: WorkerSettingsFactory
) -> None:
    fakes.trainer.plan = training_plan(tailor_tiny_dir)
    settings = worker_settings(tmp_path / "data", fakes, dataset_addr=f"127.0.0.1:{free_port()}")

    assert await run_worker(settings, handle_signals=False) == 0

    (failed,) = fakes.trainer.requests("ReportFailed")
    assert (failed.error.code, failed.retryable) == ("dataset_unavailable", True)
    assert "file-train" in failed.error.message


async def test_a_missing_base_model_fails_the_job_clearly(
    tmp_path: Path, fakes: FakeServices, tailor_tiny_dir: Path, worker_settings: WorkerSettingsFactory
) -> None:
    fakes.datasets.add_jsonl("file-train", secret_examples(4))
    plan = training_plan(tailor_tiny_dir, base_model_source=str(tmp_path / "no-such-model"))
    plan.base_model = plan.job.base_model = "no-such-model"
    fakes.trainer.plan = plan

    assert await run_worker(worker_settings(tmp_path / "data", fakes), handle_signals=False) == 0

    (failed,) = fakes.trainer.requests("ReportFailed")
    assert (failed.error.code, failed.retryable) == ("base_model_unavailable", False)
    assert "no-such-model" in failed.error.message


async def test_heartbeats_keep_coming_while_a_step_is_slow(
    tmp_path: Path,
    fakes: FakeServices,
    tailor_tiny_dir: Path,
    worker_settings: WorkerSettingsFactory,
    slow_steps: Callable[[float], None],
) -> None:
    slow_steps(2.5)
    fakes.datasets.add_jsonl("file-train", secret_examples(4))
    fakes.trainer.plan = training_plan(
        tailor_tiny_dir,
        hyperparameters=job_pb2.Hyperparameters(n_epochs=1, batch_size=4),
        heartbeat_interval_s=1,
    )

    assert await run_worker(worker_settings(tmp_path / "data", fakes), handle_signals=False) == 0

    times = [call.at for call in fakes.trainer.calls]
    gaps = [later - earlier for earlier, later in zip(times, times[1:], strict=False)]
    assert max(gaps) < 1.0 + 0.6  # the interval, plus scheduling slack on a busy machine
    assert fakes.trainer.methods()[-1] == "ReportSucceeded"


async def test_sigterm_stops_a_training_worker_within_seconds(
    tmp_path: Path, fakes: FakeServices, tailor_tiny_dir: Path, worker_settings: WorkerSettingsFactory
) -> None:
    fakes.datasets.add_jsonl("file-train", secret_examples(16))
    fakes.trainer.plan = training_plan(tailor_tiny_dir, hyperparameters=job_pb2.Hyperparameters(n_epochs=50))
    settings = worker_settings(tmp_path / "data", fakes)
    environment = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "TAILOR_DATA_DIR": str(settings.data_dir),
        "TAILOR_TRAINER_ADDR": fakes.address,
        "TAILOR_DATASET_ADDR": fakes.address,
        "TAILOR_WORKER_JOB_ID": JOB_ID,
        "TAILOR_WORKER_ATTEMPT_ID": "attempt-1",
        "TAILOR_WORKER_ORGANIZATION": ORGANIZATION,
        "TAILOR_WORKER_TOKEN": settings.worker_token.get_secret_value(),
        "TAILOR_WORKER_TORCH_THREADS": "1",
        # Long enough that only stopping the training loop, not the exit deadline, can pass the test.
        "TAILOR_WORKER_STOP_GRACE_S": "30",
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "services.trainer.worker"], cwd=REPO_ROOT, env=environment,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        await asyncio.wait_for(fakes.trainer.started.wait(), timeout=120)
        await asyncio.sleep(0.5)  # in the middle of training
        signalled = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        exit_code = await asyncio.to_thread(worker.wait, 10)
        stopped_after = time.monotonic() - signalled
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()

    assert exit_code == 128 + signal.SIGTERM, worker.stderr.read().decode() if worker.stderr else ""
    assert stopped_after < 5.0, stopped_after
    assert not {"ReportSucceeded", "ReportFailed"} & set(fakes.trainer.methods())
