"""A job with an ``mlflow`` integration, trained for real against a real MLflow tracking server on
loopback: the run holds the job's params and each step's metrics, a later attempt continues it,
and a server that is down or goes away costs the job nothing but one warn event."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient

from services.trainer.worker.run import run_worker
from services.trainer.worker.tracking import job_trackers
from services.trainer.worker.tracking.mlflow import MlflowTracker
from services.trainer.worker.training import StepMetrics, StepReport
from tailor.trainer.v1 import job_pb2
from tests.integration.worker.conftest import (
    JOB_ID,
    WorkerSettingsFactory,
    secret_examples,
    training_plan,
)
from tests.integration.worker.fakes import FakeServices
from tests.integration.worker.mlflow_server import MlflowServer, start_server

# what the client reads its limits and telemetry switch from; the worker sets its own around its calls
_MLFLOW_VARIABLES = ("MLFLOW_HTTP_REQUEST_TIMEOUT", "MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_TRACKING_URI")


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    server = start_server(tmp_path_factory.mktemp("mlflow-server"))
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def no_mlflow_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _MLFLOW_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def mlflow_integration(tracking_uri: str, experiment: str, run_name: str = "") -> job_pb2.Integration:
    return job_pb2.Integration(
        type="mlflow",
        mlflow=job_pb2.MlflowIntegration(tracking_uri=tracking_uri, experiment_name=experiment, run_name=run_name),
    )


def tracked_plan(tailor_tiny_dir: Path, fakes: FakeServices, integration: job_pb2.Integration) -> None:
    fakes.datasets.add_jsonl("file-train", secret_examples(6))
    fakes.datasets.add_jsonl("file-valid", secret_examples(10)[6:])
    hyperparameters = job_pb2.Hyperparameters(n_epochs=2, batch_size=2)
    plan = training_plan(tailor_tiny_dir, hyperparameters=hyperparameters, validation_file="file-valid")
    plan.job.integrations.append(integration)
    fakes.trainer.plan = plan


def job_runs(client: MlflowClient, experiment_name: str, job_id: str = JOB_ID) -> list:  # type: ignore[type-arg]
    experiment = client.get_experiment_by_name(experiment_name)
    assert experiment is not None, f"no experiment {experiment_name!r}"
    return client.search_runs([experiment.experiment_id], filter_string=f"tags.`tailor.job_id` = '{job_id}'")


def warnings(fakes: FakeServices) -> list[str]:
    return [event.message for event in fakes.trainer.events() if event.level == job_pb2.EVENT_LEVEL_WARN]


async def test_the_run_holds_the_jobs_params_and_every_steps_metrics(
    tmp_path: Path,
    fakes: FakeServices,
    tailor_tiny_dir: Path,
    worker_settings: WorkerSettingsFactory,
    mlflow_server: MlflowServer,
) -> None:
    tracked_plan(tailor_tiny_dir, fakes, mlflow_integration(mlflow_server.uri, "tailor-tests", "secret-word"))

    assert await run_worker(worker_settings(tmp_path / "data", fakes), handle_signals=False) == 0

    assert fakes.trainer.methods()[-1] == "ReportSucceeded" and warnings(fakes) == []
    client = MlflowClient(tracking_uri=mlflow_server.uri)  # the .venv's 3.18 client, the pinned server
    (run,) = job_runs(client, "tailor-tests")
    assert (run.info.run_name, run.info.status) == ("secret-word", "FINISHED")
    params = run.data.params
    assert (params["n_epochs"], params["batch_size"]) == ("2", "2")
    assert (params["job.training_file"], params["job.base_model"]) == ("file-train", "tailor-tiny")
    tags = run.data.tags
    assert tags["tailor.tags"] == f"tailor/finetune, tailor/tailor-tiny, tailor/{JOB_ID}"
    assert (tags["tailor.integration"], tags["tailor.validation_file"]) == ("1", "file-valid")

    def history(key: str) -> dict[int, float]:
        return {metric.step: metric.value for metric in client.get_metric_history(run.info.run_id, key)}

    # the job's own per-step record: its results file, one row per step (6 significant digits)
    ((_, content, _),) = fakes.datasets.uploads
    rows = list(csv.DictReader(io.StringIO(content.decode())))
    assert [int(row["step"]) for row in rows] == [1, 2, 3, 4, 5, 6]
    for key, column in (("train_loss", "train_loss"), ("train_mean_token_accuracy", "train_accuracy"),
                        ("valid_loss", "valid_loss"), ("valid_mean_token_accuracy", "valid_mean_token_accuracy")):
        expected = {int(row["step"]): pytest.approx(float(row[column]), rel=1e-5) for row in rows if row[column]}
        assert expected and history(key) == expected, key
    # and the metrics events' values, at the steps they were reported
    for metrics in (event.metrics for event in fakes.trainer.metrics_events()):
        assert history("train_loss")[metrics.step] == pytest.approx(metrics.train_loss)
    assert history("epoch") == {1: 1, 2: 1, 3: 1, 4: 2, 5: 2, 6: 2}
    assert sorted(history("learning_rate")) == sorted(history("tokens_per_second")) == [1, 2, 3, 4, 5, 6]
    assert all(value > 0 for value in history("tokens_per_second").values())
    assert (
        f"Reporting metrics to MLflow experiment 'tailor-tests' on {mlflow_server.uri}, run {run.info.run_id}."
        in fakes.trainer.messages()
    )


def step(number: int, loss: float) -> StepReport:
    return StepReport(
        step=number, total_steps=4, epoch=1, end_of_epoch=False, reports_metrics=False,
        metrics=StepMetrics(train_loss=loss, train_mean_token_accuracy=0.5),
        learning_rate=1e-3, input_tokens=100, seconds=0.1, trained_tokens=100 * number,
    )  # fmt: skip


def test_a_later_attempt_of_the_job_continues_its_run(
    tmp_path: Path, fakes: FakeServices, tailor_tiny_dir: Path, worker_settings: WorkerSettingsFactory,
    mlflow_server: MlflowServer,
) -> None:  # fmt: skip
    # two mlflow integrations to one experiment: two runs, each continued by its own item
    tracked_plan(tailor_tiny_dir, fakes, mlflow_integration(mlflow_server.uri, "tailor-resume"))
    job = fakes.trainer.plan.job
    job.integrations.append(mlflow_integration(mlflow_server.uri, "tailor-resume", "second"))
    settings = worker_settings(tmp_path / "data", fakes)
    posted: list[str] = []
    config = {"job_id": JOB_ID, "hyperparameters": {"n_epochs": 2}}

    first = job_trackers(job, settings, lambda event: posted.append(event.message))
    first.start(config)
    first.log(step(1, 2.0))
    first.log(step(2, 1.5))
    first.finish(failed=False)  # paused after step 2
    second = job_trackers(job, settings, lambda event: posted.append(event.message))
    second.start(config)
    second.log(step(3, 1.25))
    second.finish(failed=True)

    client = MlflowClient(tracking_uri=mlflow_server.uri)
    runs = {run.data.tags["tailor.integration"]: run for run in job_runs(client, "tailor-resume")}
    assert sorted(runs) == ["1", "2"]
    assert (runs["1"].info.run_name, runs["2"].info.run_name) == (JOB_ID, "second")
    for run in runs.values():
        assert run.info.status == "FAILED"  # the last attempt's outcome
        losses = [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "train_loss")]
        assert sorted(losses) == [(1, 2.0), (2, 1.5), (3, 1.25)]
        assert run.data.params["n_epochs"] == "2"
    continued = [message for message in posted if message.endswith("(continued).")]
    assert len(continued) == 2 and all("experiment 'tailor-resume'" in message for message in continued)


async def test_an_unreachable_server_is_one_warn_event_and_the_job_still_succeeds(
    tmp_path: Path, fakes: FakeServices, tailor_tiny_dir: Path, worker_settings: WorkerSettingsFactory
) -> None:
    # nothing listens on the discard port
    tracked_plan(tailor_tiny_dir, fakes, mlflow_integration("http://127.0.0.1:9", "tailor-tests"))
    settings = worker_settings(tmp_path / "data", fakes, worker_mlflow_request_retries=0)

    assert await run_worker(settings, handle_signals=False) == 0

    assert fakes.trainer.methods()[-1] == "ReportSucceeded"
    (warning,) = warnings(fakes)
    assert warning.startswith(
        "MLflow reporting to experiment 'tailor-tests' on http://127.0.0.1:9 stopped (start failed: MlflowException: "
    )
    assert warning.endswith("; training continues.")


async def test_a_server_that_dies_mid_training_is_one_warn_event_and_the_job_still_succeeds(
    tmp_path: Path,
    fakes: FakeServices,
    tailor_tiny_dir: Path,
    worker_settings: WorkerSettingsFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = start_server(tmp_path / "doomed-server")
    logged: list[int] = []
    log_step = MlflowTracker.log

    def kill_before_step_3(tracker: MlflowTracker, values: dict[str, float | int], number: int) -> None:
        logged.append(number)
        if number == 3:
            server.stop()
        log_step(tracker, values, number)

    monkeypatch.setattr(MlflowTracker, "log", kill_before_step_3)
    try:
        tracked_plan(tailor_tiny_dir, fakes, mlflow_integration(server.uri, "tailor-tests"))
        settings = worker_settings(tmp_path / "data", fakes, worker_mlflow_request_retries=0)

        assert await run_worker(settings, handle_signals=False) == 0
    finally:
        server.stop()

    assert fakes.trainer.methods()[-1] == "ReportSucceeded"
    assert logged == [1, 2, 3]  # dropped after its failure: steps 4-6 trained without it
    (warning,) = warnings(fakes)
    assert warning.startswith(
        f"MLflow reporting to experiment 'tailor-tests' on {server.uri} stopped (log step 3 failed: MlflowException: "
    )
