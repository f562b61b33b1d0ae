"""Creating jobs: every refusal names its field and stores nothing; retried creates do not duplicate.

The trainer here launches no real worker (the test's executor records launches), so
these tests are about what CreateJob accepts and what it answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import grpc
import pytest

import tailor.trainer.v1.trainer_service_pb2 as trainer_pb2
from services.common.tenancy import call_context
from tailor.dataset.v1 import dataset_service_pb2 as dataset_pb2
from tailor.trainer.v1 import job_pb2
from tests.integration.trainer.conftest import ORG, OTHER_ORG
from tests.integration.trainer.harness import FakeDataset, RecordingExecutor, TrainerClient, refusal

SUPERVISED = job_pb2.METHOD_TYPE_SUPERVISED
DPO = job_pb2.METHOD_TYPE_DPO


def hyperparameters(method: int = SUPERVISED, **values: Any) -> job_pb2.Method:
    return job_pb2.Method(type=method, hyperparameters=job_pb2.Hyperparameters(**values))


# (what is wrong, request fields on top of a valid request, the param named)
FIELD_REFUSALS: list[tuple[str, dict[str, Any], str]] = [
    ("no model", {"model": ""}, "model"),
    ("unknown base model", {"model": "gpt-4o-mini"}, "model"),
    ("unknown fine-tuned model", {"model": "ft:tailor-tiny:org-a::abcd1234"}, "model"),
    ("no training file", {"training_file": ""}, "training_file"),
    ("zero epochs", {"method": hyperparameters(n_epochs=0)}, "hyperparameters.n_epochs"),
    ("51 epochs", {"method": hyperparameters(n_epochs=51)}, "hyperparameters.n_epochs"),
    ("batch of 0", {"method": hyperparameters(batch_size=0)}, "hyperparameters.batch_size"),
    ("batch of 257", {"method": hyperparameters(batch_size=257)}, "hyperparameters.batch_size"),
    (
        "zero lr",
        {"method": hyperparameters(learning_rate_multiplier=0)},
        "hyperparameters.learning_rate_multiplier",
    ),
    (
        "negative lr",
        {"method": hyperparameters(learning_rate_multiplier=-1)},
        "hyperparameters.learning_rate_multiplier",
    ),
    ("beta on supervised", {"method": hyperparameters(beta=0.1)}, "hyperparameters.beta"),
    ("zero beta", {"method": hyperparameters(DPO, beta=0)}, "hyperparameters.beta"),
    ("beta over 2", {"method": hyperparameters(DPO, beta=2.5)}, "hyperparameters.beta"),
    ("rank vLLM refuses", {"method": hyperparameters(lora_rank=12)}, "hyperparameters.lora_rank"),
    ("rank over the maximum", {"method": hyperparameters(lora_rank=128)}, "hyperparameters.lora_rank"),
    ("dropout of 1", {"method": hyperparameters(lora_dropout=1.0)}, "hyperparameters.lora_dropout"),
    (
        "target modules, which the worker resolves",
        {"method": hyperparameters(lora_target_modules=["q_proj"])},
        "hyperparameters.lora_target_modules",
    ),
    ("unknown method", {"method": job_pb2.Method(type=9)}, "method.type"),
    ("colon in suffix", {"suffix": "a:b"}, "suffix"),
    ("65-character suffix", {"suffix": "x" * 65}, "suffix"),
    ("negative seed", {"seed": -1}, "seed"),
    ("seed over 2^31-1", {"seed": 2**31}, "seed"),
    ("17 metadata pairs", {"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
    ("65-character metadata key", {"metadata": {"k" * 65: "v"}}, "metadata"),
    ("513-character metadata value", {"metadata": {"k": "v" * 513}}, "metadata"),
]


async def assert_nothing_stored(trainer: TrainerClient, executor: RecordingExecutor) -> None:
    with call_context(ORG, None):
        listed = await trainer.jobs.ListJobs(trainer_pb2.ListJobsRequest())
    assert list(listed.jobs) == [] and executor.launches == []


@pytest.mark.parametrize(("wrong", "fields", "param"), FIELD_REFUSALS, ids=[r[0] for r in FIELD_REFUSALS])
async def test_malformed_requests_are_refused_naming_the_field(
    scripted_trainer: TrainerClient,
    files: FakeDataset,
    executor: RecordingExecutor,
    wrong: str,
    fields: dict[str, Any],
    param: str,
) -> None:
    request = {"training_file": files.add_file(ORG), **fields}
    error = await refusal(scripted_trainer.create(ORG, **request))
    assert (error.status, error.param) == (grpc.StatusCode.INVALID_ARGUMENT, param), error.message
    await assert_nothing_stored(scripted_trainer, executor)


# (what is wrong, makes the request's file fields from the fake dataset, the param named)
FileFields = Callable[[FakeDataset], dict[str, Any]]
FILE_REFUSALS: list[tuple[str, FileFields, str]] = [
    ("missing training file", lambda d: {"training_file": "file-nope"}, "training_file"),
    ("another organization's file", lambda d: {"training_file": d.add_file(OTHER_ORG)}, "training_file"),
    (
        "not for fine-tuning",
        lambda d: {"training_file": d.add_file(ORG, purpose=dataset_pb2.FILE_PURPOSE_ASSISTANTS)},
        "training_file",
    ),
    (
        "invalid file",
        lambda d: {"training_file": d.add_file(ORG, status=dataset_pb2.FILE_STATUS_ERROR)},
        "training_file",
    ),
    ("nine examples", lambda d: {"training_file": d.add_file(ORG, examples=9)}, "training_file"),
    (
        "preference data for supervised",
        lambda d: {"training_file": d.add_file(ORG, example_format=dataset_pb2.EXAMPLE_FORMAT_PREFERENCE)},
        "training_file",
    ),
    (
        "chat data for dpo",
        lambda d: {"training_file": d.add_file(ORG), "method": job_pb2.Method(type=DPO)},
        "training_file",
    ),
    (
        "missing validation file",
        lambda d: {"training_file": d.add_file(ORG), "validation_file": "file-nope"},
        "validation_file",
    ),
    (
        "validation file of the wrong format",
        lambda d: {
            "training_file": d.add_file(ORG),
            "validation_file": d.add_file(ORG, example_format=dataset_pb2.EXAMPLE_FORMAT_PREFERENCE),
        },
        "validation_file",
    ),
]


@pytest.mark.parametrize(("wrong", "make_fields", "param"), FILE_REFUSALS, ids=[r[0] for r in FILE_REFUSALS])
async def test_unusable_files_are_refused_naming_the_field(
    scripted_trainer: TrainerClient,
    files: FakeDataset,
    executor: RecordingExecutor,
    wrong: str,
    make_fields: FileFields,
    param: str,
) -> None:
    error = await refusal(scripted_trainer.create(ORG, **make_fields(files)))
    assert (error.status, error.param) == (grpc.StatusCode.INVALID_ARGUMENT, param), error.message
    assert error.code == f"invalid_{param}"
    await assert_nothing_stored(scripted_trainer, executor)


async def test_a_valid_request_is_accepted_with_openai_defaults(
    scripted_trainer: TrainerClient, files: FakeDataset, executor: RecordingExecutor
) -> None:
    preference_file = files.add_file(ORG, example_format=dataset_pb2.EXAMPLE_FORMAT_PREFERENCE)
    dpo = await scripted_trainer.create(
        ORG, training_file=preference_file, method=hyperparameters(DPO, beta=0.5), seed=42, suffix="my-bot_1"
    )
    assert (dpo.seed, dpo.suffix, dpo.method.type) == (42, "my-bot_1", DPO)
    assert dpo.method.hyperparameters.beta == 0.5
    assert not dpo.method.hyperparameters.HasField("n_epochs")  # "auto" until the worker resolves it

    plain = await scripted_trainer.create(ORG, training_file=files.add_file(ORG))
    assert plain.method.type == SUPERVISED and 0 <= plain.seed <= 2**31 - 1
    assert plain.status == job_pb2.JOB_STATUS_VALIDATING_FILES
    assert (plain.organization_id, plain.base_model, plain.model) == (ORG, "tailor-tiny", "tailor-tiny")
    await scripted_trainer.wait_for(ORG, plain.id, job_pb2.JOB_STATUS_QUEUED)
    assert await scripted_trainer.messages(ORG, plain.id) == [
        f"Created fine-tuning job: {plain.id}",
        f"Validating training file: {plain.training_file}",
        "Files validated, moving job to queued state",
    ]


async def test_files_found_processed_at_create_are_not_asked_about_again(
    scripted_trainer: TrainerClient, files: FakeDataset
) -> None:
    training_file = files.add_file(ORG)
    job = await scripted_trainer.create(ORG, training_file=training_file)
    await scripted_trainer.wait_for(ORG, job.id, job_pb2.JOB_STATUS_QUEUED, job_pb2.JOB_STATUS_RUNNING)
    assert files.lookups == [training_file], "create checked the file; the scheduler had nothing to ask"


async def test_a_retried_create_returns_the_first_job(
    scripted_trainer: TrainerClient, files: FakeDataset
) -> None:
    training_file = files.add_file(ORG)
    first = await scripted_trainer.create(ORG, training_file=training_file, idempotency_key="key-1")
    again = await scripted_trainer.create(ORG, training_file=training_file, idempotency_key="key-1")
    assert again.id == first.id and again.seed == first.seed

    # The key is the organization's own: another organization's same key is another job.
    other = await scripted_trainer.create(
        OTHER_ORG, training_file=files.add_file(OTHER_ORG), idempotency_key="key-1"
    )
    assert other.id != first.id

    different = await refusal(
        scripted_trainer.create(ORG, training_file=training_file, suffix="other", idempotency_key="key-1")
    )
    assert (different.status, different.param) == (grpc.StatusCode.INVALID_ARGUMENT, "idempotency_key")
    with call_context(ORG, None):
        listed = await scripted_trainer.jobs.ListJobs(trainer_pb2.ListJobsRequest())
    assert [job.id for job in listed.jobs] == [first.id]


async def test_a_job_waits_for_a_file_still_being_processed(
    scripted_trainer: TrainerClient, files: FakeDataset
) -> None:
    pending = files.add_file(ORG, status=dataset_pb2.FILE_STATUS_UPLOADED)
    job = await scripted_trainer.create(ORG, training_file=pending)
    await asyncio.sleep(0.5)  # several scheduler passes
    assert (await scripted_trainer.job(ORG, job.id)).status == job_pb2.JOB_STATUS_VALIDATING_FILES

    files.finish_processing(ORG, pending)
    await scripted_trainer.wait_for(ORG, job.id, job_pb2.JOB_STATUS_QUEUED, job_pb2.JOB_STATUS_RUNNING)


async def test_a_file_found_invalid_after_create_fails_the_job(
    scripted_trainer: TrainerClient, files: FakeDataset
) -> None:
    pending = files.add_file(ORG, status=dataset_pb2.FILE_STATUS_UPLOADED)
    job = await scripted_trainer.create(ORG, training_file=pending)
    files.finish_processing(ORG, pending, examples=3)

    failed = await scripted_trainer.wait_for(ORG, job.id, job_pb2.JOB_STATUS_FAILED)
    assert (failed.error.code, failed.error.param) == ("invalid_training_file", "training_file")
    assert "at least 10" in failed.error.message and failed.HasField("finished_at")
    events = await scripted_trainer.events(ORG, job.id)
    assert events[0].level == job_pb2.EVENT_LEVEL_ERROR and events[0].message == failed.error.message
