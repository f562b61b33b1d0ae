"""Fixtures of the trainer's integration tests: a stand-in dataset service, the trainer on loopback.

The trainer keeps its records on each database (``database_url``: SQLite, Postgres).

``worker_command`` is what the trainer launches per job. It is the fake worker by
default; the lifecycle tests also pass with the real one (``python -m
services.trainer.worker``), which a test module can choose by overriding the fixture.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.trainer.config import TrainerSettings
from tests.integration.trainer.harness import (
    FAKE_WORKER_COMMAND,
    FakeDataset,
    RecordingExecutor,
    TrainerClient,
    dataset_server,
    running_trainer,
    trainer_settings,
)

ORG = "org-a"
OTHER_ORG = "org-b"


@pytest.fixture
def worker_command() -> str:
    return FAKE_WORKER_COMMAND


@pytest.fixture
async def dataset(tmp_path: Path) -> AsyncIterator[tuple[FakeDataset, str]]:
    async with dataset_server(tmp_path / "dataset") as served:
        yield served


@pytest.fixture
def files(dataset: tuple[FakeDataset, str]) -> FakeDataset:
    return dataset[0]


@pytest.fixture
def settings(
    tmp_path: Path, dataset: tuple[FakeDataset, str], worker_command: str, database_url: str
) -> TrainerSettings:
    return trainer_settings(tmp_path / "data", dataset[1], worker_command, trainer_database_url=database_url)


@pytest.fixture
async def trainer(settings: TrainerSettings) -> AsyncIterator[TrainerClient]:
    async with running_trainer(settings) as client:
        yield client


@pytest.fixture
def executor() -> RecordingExecutor:
    return RecordingExecutor()


@pytest.fixture
async def scripted_trainer(
    settings: TrainerSettings, executor: RecordingExecutor
) -> AsyncIterator[TrainerClient]:
    """The trainer with an executor that starts nothing: the test plays the worker."""
    async with running_trainer(settings, executor) as client:
        yield client
