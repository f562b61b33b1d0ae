"""A job's MLflow integration through the trainer: its tracking URI checked against the deployment's
rule, the item stored and in the worker's plan, and the organization's MLflow credentials handed to
that job's worker only, in its environment, only where tracking servers are allow-listed."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.trainer.config import TrainerSettings
from tailor.trainer.v1 import job_pb2
from tests.integration.trainer.conftest import ORG, OTHER_ORG
from tests.integration.trainer.harness import (
    FakeDataset,
    PlayedWorker,
    RecordingExecutor,
    refusal,
    running_trainer,
)

TOKEN = "mlflow-token-of-org"


def mlflow(tracking_uri: str = "http://mlflow.internal:5000") -> job_pb2.Integration:
    return job_pb2.Integration(
        type="mlflow",
        mlflow=job_pb2.MlflowIntegration(tracking_uri=tracking_uri, experiment_name="tailor", run_name="r"),
    )


@pytest.fixture
def allow_listed(settings: TrainerSettings, tmp_path: Path) -> TrainerSettings:
    credentials = tmp_path / "mlflow-credentials"
    credentials.mkdir()
    (credentials / ORG).write_text(f"token={TOKEN}\n")
    return settings.model_copy(
        update={
            "trainer_mlflow_allowed_targets": ["mlflow.internal"],
            "trainer_mlflow_credentials_dir": credentials,
            "trainer_max_concurrent_jobs": 2,
        }
    )


async def test_an_mlflow_job_is_planned_and_its_worker_gets_its_organizations_credentials(
    allow_listed: TrainerSettings, files: FakeDataset, executor: RecordingExecutor
) -> None:
    async with running_trainer(allow_listed, executor) as trainer:
        job = await trainer.create(ORG, training_file=files.add_file(ORG), integrations=[mlflow()])
        assert list(job.integrations) == [mlflow()]
        plan = await PlayedWorker(trainer, await executor.launched(job.id), ORG).claim()
        assert list(plan.job.integrations) == [mlflow()]
        assert executor.environments[-1]["MLFLOW_TRACKING_TOKEN"] == TOKEN

        other = await trainer.create(OTHER_ORG, training_file=files.add_file(OTHER_ORG), integrations=[mlflow()])
        await executor.launched(other.id)
        assert not any(name.startswith("MLFLOW_") for name in executor.environments[-1])

        events = await trainer.events(ORG, job.id)
        assert TOKEN not in str(await trainer.job(ORG, job.id)) and not any(TOKEN in str(e) for e in events)


@pytest.mark.parametrize(
    "uri", ["file:///var/lib/tailor/mlruns", "http://169.254.169.254/latest", "http://user:pw@mlflow.internal"]
)
async def test_a_tracking_uri_off_the_rule_is_refused_naming_it(
    allow_listed: TrainerSettings, files: FakeDataset, uri: str
) -> None:
    async with running_trainer(allow_listed, RecordingExecutor()) as trainer:
        error = await refusal(
            trainer.create(ORG, training_file=files.add_file(ORG), integrations=[mlflow(), mlflow(uri)])
        )
    assert error.param == "integrations[1].mlflow.tracking_uri"


async def test_without_an_allow_list_any_http_server_is_taken_but_no_credentials_are_given(
    settings: TrainerSettings, files: FakeDataset, executor: RecordingExecutor, tmp_path: Path
) -> None:
    credentials = tmp_path / "mlflow-credentials"
    credentials.mkdir()
    (credentials / ORG).write_text(f"token={TOKEN}\n")
    open_settings = settings.model_copy(update={"trainer_mlflow_credentials_dir": credentials})
    async with running_trainer(open_settings, executor) as trainer:
        job = await trainer.create(
            ORG, training_file=files.add_file(ORG), integrations=[mlflow("http://127.0.0.1:5000")]
        )
        await executor.launched(job.id)
        assert "MLFLOW_TRACKING_TOKEN" not in executor.environments[-1]
        error = await refusal(
            trainer.create(ORG, training_file=files.add_file(ORG), integrations=[mlflow("file:///tmp/mlruns")])
        )
    assert error.param == "integrations[0].mlflow.tracking_uri"
