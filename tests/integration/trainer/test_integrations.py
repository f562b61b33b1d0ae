"""A job's W&B integration through the trainer: stored, returned, in the worker's plan, and the
organization's W&B key handed to that job's worker only, in its environment and nowhere else."""

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
    TrainerClient,
    refusal,
    running_trainer,
)

KEY = "0123456789abcdef0123456789abcdef01234567"
WANDB = job_pb2.Integration(
    type="wandb",
    wandb=job_pb2.WandbIntegration(project="p", entity="team", name="run", tags=["a", "b"]),
)


@pytest.fixture
def keyed_settings(settings: TrainerSettings, tmp_path: Path) -> TrainerSettings:
    keys = tmp_path / "wandb-keys"
    keys.mkdir()
    (keys / ORG).write_text(KEY + "\n")
    return settings.model_copy(
        update={
            "trainer_wandb_keys_dir": keys,
            "trainer_wandb_base_url": "https://wandb.example.com",
            "trainer_max_concurrent_jobs": 3,  # the three jobs below are launched side by side
        }
    )


async def test_a_wandb_job_gets_its_organizations_key_in_the_environment_only(
    keyed_settings: TrainerSettings, files: FakeDataset, executor: RecordingExecutor
) -> None:
    async with running_trainer(keyed_settings, executor) as trainer:
        job = await trainer.create(ORG, training_file=files.add_file(ORG), integrations=[WANDB])
        assert list(job.integrations) == [WANDB]
        plan = await PlayedWorker(trainer, await executor.launched(job.id), ORG).claim()
        assert list(plan.job.integrations) == [WANDB]
        environment = executor.environments[-1]
        assert environment["WANDB_API_KEY"] == KEY
        assert environment["WANDB_BASE_URL"] == "https://wandb.example.com"

        # another organization without a key file: no key (its run is offline), the server still set
        other_file = files.add_file(OTHER_ORG)
        other = await trainer.create(OTHER_ORG, training_file=other_file, integrations=[WANDB])
        await executor.launched(other.id)
        assert "WANDB_API_KEY" not in executor.environments[-1]
        assert executor.environments[-1]["WANDB_BASE_URL"] == "https://wandb.example.com"

        # a job of the keyed organization without integrations: no W&B variable at all
        plain = await trainer.create(ORG, training_file=files.add_file(ORG), suffix="plain")
        await executor.launched(plain.id)
        assert not any(name.startswith("WANDB_") for name in executor.environments[-1])

        # the key is in no record the API can show
        shown = await trainer.job(ORG, job.id)
        events = await trainer.events(ORG, job.id)
        assert KEY not in str(shown) and not any(KEY in str(event) for event in events)


async def test_a_job_with_integrations_reads_them_back_after_a_restart(
    settings: TrainerSettings, files: FakeDataset, executor: RecordingExecutor
) -> None:
    async with running_trainer(settings, executor) as trainer:
        job = await trainer.create(ORG, training_file=files.add_file(ORG), integrations=[WANDB])
    async with running_trainer(settings, RecordingExecutor()) as restarted:
        assert list((await restarted.job(ORG, job.id)).integrations) == [WANDB]


async def test_an_integration_of_another_type_is_refused_naming_it(
    scripted_trainer: TrainerClient, files: FakeDataset
) -> None:
    bad = job_pb2.Integration(type="comet", wandb=job_pb2.WandbIntegration(project="p"))
    error = await refusal(
        scripted_trainer.create(ORG, training_file=files.add_file(ORG), integrations=[WANDB, bad])
    )
    assert error.param == "integrations[1].type"
