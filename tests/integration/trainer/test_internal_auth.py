"""The trainer's side of internal auth: what a worker's launch token allows, and who may call what.

The token checked here is the real one: the trainer mints it at launch and hands it to
the worker's environment (TAILOR_WORKER_TOKEN); the test replays what a worker holding
it might try.
"""

from __future__ import annotations

import time
from typing import Any

import grpc
import jwt
import pytest

import tailor.trainer.v1.model_registry_service_pb2 as registry_pb2
import tailor.trainer.v1.trainer_service_pb2 as trainer_pb2
import tailor.trainer.v1.worker_service_pb2 as worker_pb2
from services.trainer.config import TrainerSettings
from tailor.trainer.v1 import job_pb2
from tests.integration.trainer.conftest import ORG, OTHER_ORG
from tests.integration.trainer.harness import FakeDataset, RecordingExecutor, TrainerClient
from tests.support.internal_auth import bearer, service_token


def launch_token(executor: RecordingExecutor, job_id: str) -> str:
    index = max(i for i, launch in enumerate(executor.launches) if launch.job_id == job_id)
    return executor.environments[index]["TAILOR_WORKER_TOKEN"]


async def status_of(call: Any) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value.code()


async def test_the_launch_token_names_the_job_attempt_organization_and_files_only(
    scripted_trainer: TrainerClient,
    files: FakeDataset,
    executor: RecordingExecutor,
    settings: TrainerSettings,
) -> None:
    training, validation = files.add_file(ORG), files.add_file(ORG)
    job = await scripted_trainer.create(ORG, training_file=training, validation_file=validation)
    identity = await executor.launched(job.id)
    environment = executor.environments[-1]
    claims = jwt.decode(launch_token(executor, job.id), options={"verify_signature": False})
    assert (claims["iss"], claims["sub"], claims["org"]) == ("trainer", "worker", ORG)
    assert (claims["job"], claims["attempt"]) == (job.id, identity.attempt_id)
    assert sorted(claims["files"]) == sorted([training, validation])
    assert claims["exp"] <= time.time() + settings.trainer_worker_token_ttl_s + 5
    # The worker gets its token, never the trainer's key or identity.
    assert not any(
        name.startswith("TAILOR_INTERNAL_AUTH_") and name != "TAILOR_INTERNAL_AUTH_DISABLED"
        for name in environment
    )


async def test_a_worker_token_cannot_claim_or_report_on_another_job(
    scripted_trainer: TrainerClient, files: FakeDataset, executor: RecordingExecutor
) -> None:
    mine = await scripted_trainer.create(ORG, training_file=files.add_file(ORG))
    theirs = await scripted_trainer.create(ORG, training_file=files.add_file(ORG))
    my_identity = await executor.launched(mine.id)
    their_identity = await executor.launched(theirs.id)
    metadata = bearer(launch_token(executor, mine.id))
    workers = scripted_trainer.workers

    # Its own job: claimed.
    plan = (await workers.ClaimJob(worker_pb2.ClaimJobRequest(worker=my_identity), metadata=metadata)).plan
    assert plan.job.id == mine.id

    # Another job, or its own job under another attempt id: refused before the trainer looks.
    for identity in (
        their_identity,
        worker_pb2.WorkerIdentity(job_id=mine.id, attempt_id=their_identity.attempt_id),
    ):
        assert (
            await status_of(workers.ClaimJob(worker_pb2.ClaimJobRequest(worker=identity), metadata=metadata))
            == grpc.StatusCode.PERMISSION_DENIED
        )
        request = worker_pb2.ReportFailedRequest(
            worker=identity, error=job_pb2.JobError(code="x", message="x")
        )
        assert (
            await status_of(workers.ReportFailed(request, metadata=metadata))
            == grpc.StatusCode.PERMISSION_DENIED
        )
    # The other job was neither claimed nor failed: still waiting for its own worker.
    assert (await scripted_trainer.job(ORG, theirs.id)).status == job_pb2.JOB_STATUS_QUEUED

    # Nor may a worker use the trainer's other services.
    assert (
        await status_of(scripted_trainer.jobs.ListJobs(trainer_pb2.ListJobsRequest(), metadata=metadata))
        == grpc.StatusCode.PERMISSION_DENIED
    )
    assert (
        await status_of(
            scripted_trainer.models.ResolveModel(
                registry_pb2.ResolveModelRequest(model="x"), metadata=metadata
            )
        )
        == grpc.StatusCode.PERMISSION_DENIED
    )


async def test_a_worker_token_is_useless_once_its_attempt_ended(
    scripted_trainer: TrainerClient, files: FakeDataset, executor: RecordingExecutor
) -> None:
    job = await scripted_trainer.create(ORG, training_file=files.add_file(ORG))
    identity = await executor.launched(job.id)
    metadata = bearer(launch_token(executor, job.id))
    await scripted_trainer.workers.ClaimJob(worker_pb2.ClaimJobRequest(worker=identity), metadata=metadata)
    ended = await scripted_trainer.workers.ReportFailed(
        worker_pb2.ReportFailedRequest(worker=identity, error=job_pb2.JobError(code="x", message="x")),
        metadata=metadata,
    )
    assert ended.job.status == job_pb2.JOB_STATUS_FAILED
    # The attempt is over: its token, still unexpired, moves nothing.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await scripted_trainer.workers.ReportEvents(
            worker_pb2.ReportEventsRequest(worker=identity, current_step=1), metadata=metadata
        )
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert (await scripted_trainer.job(ORG, job.id)).status == job_pb2.JOB_STATUS_FAILED


@pytest.mark.parametrize(
    ("issuer", "stub", "call", "expected"),
    [
        # The dataset service calls no one; the inference service only resolves models.
        (
            "dataset",
            "jobs",
            lambda s: s.ListJobs(trainer_pb2.ListJobsRequest()),
            grpc.StatusCode.PERMISSION_DENIED,
        ),
        (
            "inference",
            "jobs",
            lambda s: s.ListJobs(trainer_pb2.ListJobsRequest()),
            grpc.StatusCode.PERMISSION_DENIED,
        ),
        # Only a worker token may report; no service may play a worker.
        (
            "gateway",
            "workers",
            lambda s: s.ClaimJob(
                worker_pb2.ClaimJobRequest(worker=worker_pb2.WorkerIdentity(job_id="j", attempt_id="a"))
            ),
            grpc.StatusCode.PERMISSION_DENIED,
        ),
        (
            "trainer",
            "workers",
            lambda s: s.ClaimJob(
                worker_pb2.ClaimJobRequest(worker=worker_pb2.WorkerIdentity(job_id="j", attempt_id="a"))
            ),
            grpc.StatusCode.PERMISSION_DENIED,
        ),
        # Inference may resolve a model (the answer: no such model in this organization).
        (
            "inference",
            "models",
            lambda s: s.ResolveModel(registry_pb2.ResolveModelRequest(model="ft:x")),
            grpc.StatusCode.NOT_FOUND,
        ),
    ],
)
async def test_which_service_may_call_which_trainer_method(
    trainer: TrainerClient, issuer: str, stub: str, call: Any, expected: grpc.StatusCode
) -> None:
    target = getattr(trainer, stub)
    token = service_token(issuer, "trainer", ORG)

    class WithToken:
        def __getattr__(self, name: str) -> Any:
            return lambda request: getattr(target, name)(request, metadata=bearer(token))

    assert await status_of(call(WithToken())) == expected


async def test_the_gateway_lists_only_the_organization_its_token_names(
    trainer: TrainerClient, files: FakeDataset
) -> None:
    job = await trainer.create(ORG, training_file=files.add_file(ORG))
    listed = await trainer.jobs.ListJobs(
        trainer_pb2.ListJobsRequest(), metadata=bearer(service_token("gateway", "trainer", OTHER_ORG))
    )
    assert job.id not in [j.id for j in listed.jobs]
    # A forged organization header beside a token naming another organization changes nothing.
    listed = await trainer.jobs.ListJobs(
        trainer_pb2.ListJobsRequest(),
        metadata=(*bearer(service_token("gateway", "trainer", OTHER_ORG)), ("x-tailor-organization", ORG)),
    )
    assert job.id not in [j.id for j in listed.jobs]
