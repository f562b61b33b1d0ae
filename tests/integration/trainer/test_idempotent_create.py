"""Repeated creates: a derived key returns only a job that has not ended; a client's key returns its job.

The first tests call the trainer as the gateway does (``idempotency_key_derived`` set when
the client sent no key). The last drives the real gateway with the OpenAI SDK over the
real trainer, as a user repeating a create after cancelling sees it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import tailor.trainer.v1.trainer_service_pb2 as trainer_pb2
from services.common.tenancy import call_context
from services.trainer.config import TrainerSettings
from tailor.trainer.v1 import job_pb2
from tests.integration.trainer.conftest import ORG
from tests.integration.trainer.harness import FakeDataset, RecordingExecutor, TrainerClient, running_trainer
from tests.unit.gateway.conftest import Gateway, running_gateway

DERIVED = {"idempotency_key": "derived:abc", "idempotency_key_derived": True}


async def cancel(trainer: TrainerClient, job_id: str) -> job_pb2.Job:
    with call_context(ORG, None):
        return (await trainer.jobs.CancelJob(trainer_pb2.CancelJobRequest(job_id=job_id))).job


async def job_ids(trainer: TrainerClient) -> list[str]:
    with call_context(ORG, None):
        return [job.id for job in (await trainer.jobs.ListJobs(trainer_pb2.ListJobsRequest())).jobs]


async def test_a_derived_key_returns_the_job_until_it_ends_then_creates_a_new_one(
    scripted_trainer: TrainerClient, files: FakeDataset
) -> None:
    training_file = files.add_file(ORG)
    first = await scripted_trainer.create(ORG, training_file=training_file, **DERIVED)
    assert (await scripted_trainer.create(ORG, training_file=training_file, **DERIVED)).id == first.id

    assert (await cancel(scripted_trainer, first.id)).status == job_pb2.JOB_STATUS_CANCELLED
    second = await scripted_trainer.create(ORG, training_file=training_file, **DERIVED)
    assert second.id != first.id and second.status == job_pb2.JOB_STATUS_VALIDATING_FILES
    # The new job now answers the key; the cancelled one is still there, unchanged.
    assert (await scripted_trainer.create(ORG, training_file=training_file, **DERIVED)).id == second.id
    assert (await scripted_trainer.job(ORG, first.id)).status == job_pb2.JOB_STATUS_CANCELLED
    assert await job_ids(scripted_trainer) == [second.id, first.id]


async def test_concurrent_identical_creates_are_one_job_even_after_an_ended_one(
    scripted_trainer: TrainerClient, files: FakeDataset
) -> None:
    training_file = files.add_file(ORG)
    ended = await scripted_trainer.create(ORG, training_file=training_file, **DERIVED)
    await cancel(scripted_trainer, ended.id)

    created = await asyncio.gather(
        *(scripted_trainer.create(ORG, training_file=training_file, **DERIVED) for _ in range(6))
    )
    assert len({job.id for job in created}) == 1 and created[0].id != ended.id
    assert await job_ids(scripted_trainer) == [created[0].id, ended.id]


async def test_a_client_key_returns_its_job_even_after_it_ended(
    scripted_trainer: TrainerClient, files: FakeDataset
) -> None:
    training_file = files.add_file(ORG)
    first = await scripted_trainer.create(ORG, training_file=training_file, idempotency_key="client:mine")
    await cancel(scripted_trainer, first.id)
    again = await scripted_trainer.create(ORG, training_file=training_file, idempotency_key="client:mine")
    assert (again.id, again.status) == (first.id, job_pb2.JOB_STATUS_CANCELLED)


@pytest.fixture
async def gateway_over_the_trainer(
    tmp_path: Path, settings: TrainerSettings, executor: RecordingExecutor
) -> AsyncIterator[Gateway]:
    """The real gateway whose trainer is the real one (its dataset the stand-in the trainer asks)."""
    async with running_trainer(settings, executor) as trainer:
        async with running_gateway(tmp_path / "gateway", trainer_addr=trainer.address) as gateway:
            yield gateway


async def test_through_the_gateway_a_repeated_create_after_cancelling_starts_a_new_job(
    gateway_over_the_trainer: Gateway, files: FakeDataset
) -> None:
    client = gateway_over_the_trainer.sdk()
    training_file = files.add_file(ORG)

    first = await client.fine_tuning.jobs.create(model="tailor-tiny", training_file=training_file)
    retried = await client.fine_tuning.jobs.create(model="tailor-tiny", training_file=training_file)
    assert retried.id == first.id, "a retry of a live job is deduplicated without a key"

    await client.fine_tuning.jobs.cancel(first.id)
    again = await client.fine_tuning.jobs.create(model="tailor-tiny", training_file=training_file)
    assert again.id != first.id and again.status == "validating_files"

    keyed = {"extra_headers": {"Idempotency-Key": "run-7"}}
    mine = await client.fine_tuning.jobs.create(model="tailor-tiny", training_file=training_file, **keyed)
    await client.fine_tuning.jobs.cancel(mine.id)
    repeated = await client.fine_tuning.jobs.create(model="tailor-tiny", training_file=training_file, **keyed)
    assert (repeated.id, repeated.status) == (mine.id, "cancelled"), "a client's key keeps naming its job"
