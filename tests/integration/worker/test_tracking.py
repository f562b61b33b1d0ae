"""A job with OpenAI's W&B integration, trained for real: the run holds each step's metrics, and a
failing tracker costs the job nothing but one warn event."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import wandb

from services.trainer.worker.run import run_worker
from services.trainer.worker.tracking.wandb import WandbTracker
from tailor.trainer.v1 import job_pb2
from tests.integration.worker.conftest import (
    JOB_ID,
    ORGANIZATION,
    WorkerSettingsFactory,
    secret_examples,
    training_plan,
)
from tests.integration.worker.fakes import FakeServices
from tests.integration.worker.wandb_files import offline_runs

WANDB = job_pb2.Integration(
    type="wandb", wandb=job_pb2.WandbIntegration(project="tailor-tests", name="secret-word", tags=["mine"])
)


@pytest.fixture(autouse=True)
def no_wandb_account(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # No key: the worker must choose offline mode itself; nothing may reach wandb.ai or ~/.netrc.
    for name in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_BASE_URL", "WANDB_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))


def tracked_plan(tailor_tiny_dir: Path, fakes: FakeServices) -> None:
    fakes.datasets.add_jsonl("file-train", secret_examples(6))
    fakes.datasets.add_jsonl("file-valid", secret_examples(10)[6:])
    hyperparameters = job_pb2.Hyperparameters(n_epochs=2, batch_size=2)
    plan = training_plan(tailor_tiny_dir, hyperparameters=hyperparameters, validation_file="file-valid")
    plan.job.integrations.append(WANDB)
    fakes.trainer.plan = plan


async def test_an_offline_run_holds_every_steps_metrics_under_openais_names(
    tmp_path: Path, fakes: FakeServices, tailor_tiny_dir: Path, worker_settings: WorkerSettingsFactory
) -> None:
    tracked_plan(tailor_tiny_dir, fakes)
    data_dir = tmp_path / "data"

    assert await run_worker(worker_settings(data_dir, fakes), handle_signals=False) == 0

    assert fakes.trainer.methods()[-1] == "ReportSucceeded"
    (run,) = offline_runs(data_dir / "wandb" / ORGANIZATION / JOB_ID)
    assert (run.run_id, run.project, run.name) == (JOB_ID, "tailor-tests", "secret-word")
    assert run.tags == ["tailor/finetune", "tailor/tailor-tiny", f"tailor/{JOB_ID}", "mine"]
    assert run.config["hyperparameters"]["n_epochs"] == 2 and run.config["training_file"] == "file-train"

    # 6 examples, batch 2, 2 epochs: 6 steps, each logged once with the loop's own values
    assert [row["_step"] for row in run.history] == [1, 2, 3, 4, 5, 6]
    for row in run.history:
        assert {"train_loss", "train_mean_token_accuracy", "learning_rate", "tokens_per_second"} <= row.keys()
        assert row["tokens_per_second"] > 0 and 0 <= row["train_mean_token_accuracy"] <= 1
    assert [row["epoch"] for row in run.history] == [1, 1, 1, 2, 2, 2]
    # validation where the job's metrics events measured it: the metrics steps and the epochs' ends
    reported = [event.metrics for event in fakes.trainer.metrics_events()]
    logged = {row["_step"]: row["valid_loss"] for row in run.history if "valid_loss" in row}
    validated = {m.step: pytest.approx(m.valid_loss) for m in reported if m.HasField("valid_loss")}
    assert logged and logged == validated
    for metrics in reported:
        assert run.history[metrics.step - 1]["train_loss"] == pytest.approx(metrics.train_loss)
    assert any(message.startswith("Reporting metrics to Weights & Biases project 'tailor-tests' offline")
               for message in fakes.trainer.messages())  # fmt: skip


async def test_a_tracker_that_cannot_start_is_one_warn_event_and_the_job_still_succeeds(
    tmp_path: Path,
    fakes: FakeServices,
    tailor_tiny_dir: Path,
    worker_settings: WorkerSettingsFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise wandb.errors.CommError("W&B is down")

    monkeypatch.setattr(wandb, "init", refuse)
    tracked_plan(tailor_tiny_dir, fakes)

    assert await run_worker(worker_settings(tmp_path / "data", fakes), handle_signals=False) == 0

    assert fakes.trainer.methods()[-1] == "ReportSucceeded"
    events = fakes.trainer.events()
    warnings = [event.message for event in events if event.level == job_pb2.EVENT_LEVEL_WARN]
    assert warnings == [
        "Weights & Biases reporting to project 'tailor-tests' stopped "
        "(start failed: CommError: W&B is down); training continues."
    ]


async def test_an_unreachable_wandb_server_is_a_warning_and_the_run_is_written_offline(
    tmp_path: Path,
    fakes: FakeServices,
    tailor_tiny_dir: Path,
    worker_settings: WorkerSettingsFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a key, but the (self-hosted) server's port is closed: nothing listens on the discard port
    monkeypatch.setenv("WANDB_API_KEY", "0123456789abcdef0123456789abcdef01234567")
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")
    tracked_plan(tailor_tiny_dir, fakes)
    data_dir = tmp_path / "data"
    settings = worker_settings(data_dir, fakes, worker_wandb_init_timeout_s=2.0)

    assert await run_worker(settings, handle_signals=False) == 0

    assert fakes.trainer.methods()[-1] == "ReportSucceeded"
    events = fakes.trainer.events()
    (warning,) = [event.message for event in events if event.level == job_pb2.EVENT_LEVEL_WARN]
    assert warning.startswith("Weights & Biases could not be reached (CommError: ")
    assert warning.endswith("the run of project 'tailor-tests' is written offline instead.")
    (run,) = offline_runs(data_dir / "wandb" / ORGANIZATION / JOB_ID)
    assert run.run_id == f"{JOB_ID}-offline"
    assert [row["_step"] for row in run.history] == [1, 2, 3, 4, 5, 6]


async def test_what_a_tracker_says_on_closing_comes_before_the_outcome_the_last_report(
    tmp_path: Path,
    fakes: FakeServices,
    tailor_tiny_dir: Path,
    worker_settings: WorkerSettingsFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A run whose closing takes longer than a heartbeat interval (1 s here), then fails; no real
    # W&B run, whose id would stay taken in this process after the test above.
    def slow_failing_finish(self: WandbTracker, *, failed: bool) -> None:
        time.sleep(1.5)
        raise wandb.errors.CommError("upload interrupted")

    monkeypatch.setattr(WandbTracker, "start", lambda self, config: None)
    monkeypatch.setattr(WandbTracker, "log", lambda self, values, step: None)
    monkeypatch.setattr(WandbTracker, "finish", slow_failing_finish)
    tracked_plan(tailor_tiny_dir, fakes)

    assert await run_worker(worker_settings(tmp_path / "data", fakes), handle_signals=False) == 0

    # nothing after the outcome: no heartbeat, no event the trainer would refuse
    assert fakes.trainer.methods()[-1] == "ReportSucceeded"
    warnings = [event.message for event in fakes.trainer.events() if event.level == job_pb2.EVENT_LEVEL_WARN]
    assert warnings == [
        "Weights & Biases reporting to project 'tailor-tests' stopped "
        "(finish failed: CommError: upload interrupted); training continues."
    ]
