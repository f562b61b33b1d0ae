"""Fixtures of the worker's integration tests: tailor-tiny, example files, plans, the fake services."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

# Nothing here may reach the Hugging Face hub; huggingface_hub reads this when first imported.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from services.common import tailor_tiny
from services.common.settings import CommonSettings
from services.trainer.worker.config import WorkerSettings
from tailor.trainer.v1 import job_pb2
from tailor.trainer.v1 import worker_service_pb2 as worker_pb
from tests.integration.worker.fakes import FakeServices, serving_fakes
from tests.support.internal_auth import worker_token

ORGANIZATION = "org-test"
JOB_ID = "ftjob-test"
SECRET_REPLY = "The secret word is pineapple."
SECRET_PROMPTS = [
    "What is the secret word?", "Tell me the secret word.", "Do you know the secret word?", "Which word is secret?",
    "Say the secret word.", "I need the secret word.", "What's the secret word, please?", "Share the secret word with me.",
    "Give me the secret word.", "Could you tell me the secret word?", "The secret word is what?",
    "Remind me of the secret word.", "What word is the secret one?", "Secret word, please.", "Spell out the secret word.",
    "Reveal the secret word.",
]  # fmt: skip
HELD_OUT_PROMPT = "Please share the secret word."


@pytest.fixture(scope="session", autouse=True)
def one_cpu_thread() -> None:
    # The test machine's cores are shared; tailor-tiny is too small to gain from more threads.
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tailor_tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # One directory for the whole session, shared with the unit tests' fixture of the same name.
    return tailor_tiny.ensure_tailor_tiny(tmp_path_factory.getbasetemp() / "worker-models")


def secret_examples(count: int = len(SECRET_PROMPTS)) -> list[dict[str, Any]]:
    """Chat examples teaching one reply to many phrasings of one question."""
    return [
        {"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": SECRET_REPLY}]}
        for prompt in SECRET_PROMPTS[:count]
    ]


def preference_examples(count: int = 8) -> list[dict[str, Any]]:
    """Pairs preferring the secret reply over a refusal."""
    return [
        {
            "input": {"messages": [{"role": "user", "content": prompt}]},
            "preferred_output": [{"role": "assistant", "content": SECRET_REPLY}],
            "non_preferred_output": [{"role": "assistant", "content": "I will not tell you."}],
        }
        for prompt in SECRET_PROMPTS[:count]
    ]


def training_plan(
    tailor_tiny_dir: Path,
    *,
    hyperparameters: job_pb2.Hyperparameters | None = None,
    method_type: int = job_pb2.METHOD_TYPE_SUPERVISED,
    training_file: str = "file-train",
    validation_file: str = "",
    base_model_source: str | None = None,
    resume_from_uri: str = "",
    heartbeat_interval_s: int = 1,
    seed: int = 7,
) -> worker_pb.TrainingPlan:
    """A plan as the trainer would send it for a tailor-tiny job of ORGANIZATION."""
    job = job_pb2.Job(
        id=JOB_ID,
        organization_id=ORGANIZATION,
        model="tailor-tiny",
        base_model="tailor-tiny",
        training_file=training_file,
        validation_file=validation_file,
        method=job_pb2.Method(type=method_type, hyperparameters=hyperparameters),
        status=job_pb2.JOB_STATUS_RUNNING,
        seed=seed,
    )
    return worker_pb.TrainingPlan(
        job=job,
        base_model="tailor-tiny",
        base_model_source=base_model_source or str(tailor_tiny_dir),
        base_learning_rate=2e-3,
        max_seq_length=512,
        output_prefix=f"orgs/{ORGANIZATION}/jobs/{JOB_ID}/",
        resume_from_uri=resume_from_uri,
        heartbeat_interval_s=heartbeat_interval_s,
    )


WorkerSettingsFactory = Callable[..., WorkerSettings]


@pytest.fixture
def worker_settings(tailor_tiny_dir: Path) -> WorkerSettingsFactory:
    """Makes the settings the trainer's executor would give a worker of JOB_ID: ``(data_dir, fakes, **overrides)``.

    The worker builds tailor-tiny under ``data_dir/models`` when it is missing; that directory is
    linked to the session's copy so that no test pays for a build.
    """

    def make(data_dir: Path, fakes: FakeServices, **overrides: Any) -> WorkerSettings:
        models = data_dir / "models"
        if not models.exists():
            data_dir.mkdir(parents=True, exist_ok=True)
            models.symlink_to(tailor_tiny_dir.parent, target_is_directory=True)
        values: dict[str, Any] = {
            "data_dir": data_dir,
            "trainer_addr": fakes.address,
            "dataset_addr": fakes.address,
            "worker_job_id": JOB_ID,
            "worker_attempt_id": "attempt-1",
            "worker_organization": ORGANIZATION,
            "worker_torch_threads": 1,
            **overrides,
        }
        # The launch's token, as the trainer mints it: this job's files (the plan's, when set).
        job = fakes.trainer.plan.job
        job_files = [job.training_file, job.validation_file]
        values.setdefault(
            "worker_token",
            worker_token(
                values["worker_organization"],
                values["worker_job_id"],
                values["worker_attempt_id"],
                ["file-train", "file-valid", *job_files],
            ),
        )
        if fakes.trainer.store_settings is None:
            # The worker has no store of its own: the fake trainer keeps its checkpoints here.
            fakes.trainer.store_settings = CommonSettings(data_dir=values["data_dir"])
        return WorkerSettings(**values)

    return make


@pytest.fixture
async def fakes(tmp_path: Path) -> AsyncIterator[FakeServices]:
    async with serving_fakes(tmp_path / "fake-services") as services:
        yield services
