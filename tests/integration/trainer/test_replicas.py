"""Two trainer replicas on one database never launch the same job twice.

Production can run several trainer replicas against one Postgres. Each replica's scheduler
takes queued jobs for its own workers; two replicas ticking at the same moment must
split the queue, not both launch a job (two workers training one job, each thinking it
owns it). The replicas here are two real trainer runtimes, each with its own records
engine and its own recording executor, on ONE database; the test ticks both schedulers
concurrently, round after round, and plays the workers so that slots free up: each
launched worker claims its job through its own replica and reports success.

On SQLite the same holds for two processes sharing one file (two engines here), though
multi-replica deployments are a Postgres matter. What else still assumes one replica is
listed in :mod:`services.trainer.scheduler`.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select

import tailor.trainer.v1.trainer_service_pb2 as trainer_pb2
import tailor.trainer.v1.worker_service_pb2 as worker_pb2
from services.common.tenancy import call_context
from services.trainer.config import TrainerSettings
from services.trainer.records import JobRecord, Status
from services.trainer.runtime import TrainerRuntime
from tests.integration.trainer.conftest import ORG
from tests.integration.trainer.harness import FakeDataset, RecordingExecutor

JOBS = 30
SLOTS_PER_REPLICA = 2
MAX_ROUNDS = 60


class Replica:
    """One trainer replica's scheduler, worker API and records, with an executor that only records launches."""

    def __init__(self, name: str, settings: TrainerSettings) -> None:
        self.name = name
        self.executor = RecordingExecutor()
        self.runtime = TrainerRuntime(settings, executor=self.executor)

    async def tick(self) -> None:
        await self.runtime.scheduler.tick()

    async def finish_launched_workers(self) -> None:
        """Each running worker claims its job and reports success through this replica, then exits."""
        running = [launch for launch in self.executor.launches if launch.attempt_id in self.executor.running]
        for launch in running:
            identity = worker_pb2.WorkerIdentity(job_id=launch.job_id, attempt_id=launch.attempt_id)
            with call_context(launch.organization_id, None):
                plan = await self.runtime.workers.claim(identity)
                await self.runtime.workers.report_succeeded(
                    worker_pb2.ReportSucceededRequest(
                        worker=identity, adapter_uri=plan.output_prefix + "adapter/"
                    )
                )
            self.executor.exit(launch.attempt_id)


@pytest.fixture
def settings(settings: TrainerSettings) -> TrainerSettings:
    return settings.model_copy(update={"trainer_max_concurrent_jobs": SLOTS_PER_REPLICA})


@pytest.fixture
async def replicas(settings: TrainerSettings) -> AsyncIterator[tuple[Replica, Replica]]:
    pair = (Replica("a", settings), Replica("b", settings))
    for replica in pair:
        await replica.runtime.open()
    try:
        yield pair
    finally:
        for replica in pair:
            await replica.runtime.stop_scheduling()
            await replica.runtime.close()


async def test_two_replicas_ticking_together_launch_every_queued_job_exactly_once(
    replicas: tuple[Replica, Replica], files: FakeDataset
) -> None:
    a, b = replicas
    training_file = files.add_file(ORG)
    request = trainer_pb2.CreateJobRequest(model="tailor-tiny", training_file=training_file)
    with call_context(ORG, None):
        job_ids = {(await a.runtime.jobs.create(request)).id for _ in range(JOBS)}

    for round_number in range(MAX_ROUNDS):
        # Both schedulers pass at once; who starts first alternates, so each wins races.
        first, second = (a, b) if round_number % 2 == 0 else (b, a)
        await asyncio.gather(first.tick(), second.tick())

        launched = Counter(launch.job_id for replica in (a, b) for launch in replica.executor.launches)
        twice = sorted(job_id for job_id, count in launched.items() if count > 1)
        assert not twice, f"round {round_number}: launched by both replicas or twice: {twice}"
        for replica in (a, b):
            assert len(replica.executor.running) <= SLOTS_PER_REPLICA, (
                f"replica {replica.name} over its limit"
            )
        await asyncio.gather(a.finish_launched_workers(), b.finish_launched_workers())
        if set(launched) == job_ids:
            break

    assert set(launched) == job_ids, (
        f"{len(job_ids - set(launched))} jobs never launched in {MAX_ROUNDS} rounds"
    )
    launches_by_replica = {replica.name: len(replica.executor.launches) for replica in (a, b)}
    assert all(launches_by_replica.values()), f"one replica launched everything: {launches_by_replica}"
    async with a.runtime.records.read() as session:
        rows = (await session.execute(select(JobRecord.status, JobRecord.attempts))).all()
    assert sorted(rows) == [(Status.SUCCEEDED, 1)] * JOBS


async def test_a_resume_on_another_replica_waits_for_the_pausing_worker_and_continues_from_its_checkpoint(
    replicas: tuple[Replica, Replica], files: FakeDataset
) -> None:
    a, b = replicas
    request = trainer_pb2.CreateJobRequest(model="tailor-tiny", training_file=files.add_file(ORG))
    with call_context(ORG, None):
        job_id = (await a.runtime.jobs.create(request)).id
    await a.tick()
    (launch,) = a.executor.launches
    worker = worker_pb2.WorkerIdentity(job_id=job_id, attempt_id=launch.attempt_id)
    with call_context(ORG, None):
        plan = await a.runtime.workers.claim(worker)
        await b.runtime.jobs.pause(job_id)
        await b.runtime.jobs.resume(job_id)
    # Replica b does not watch the pausing worker, yet must not launch a second one for the job.
    await asyncio.gather(a.tick(), b.tick())
    assert (len(a.executor.launches), b.executor.launches) == (1, [])

    step = f"{plan.output_prefix}checkpoints/step-2/"
    with call_context(ORG, None):
        _, directive = await b.runtime.workers.report_checkpoint(
            worker_pb2.ReportCheckpointRequest(
                worker=worker, step_number=2, adapter_uri=step + "adapter", state_uri=step + "state"
            )
        )
    assert directive == worker_pb2.WORKER_DIRECTIVE_PAUSE, "a pausing worker finishes its pause"
    a.executor.exit(launch.attempt_id)
    await a.tick()  # a sees its worker gone, lets go of the job, and launches the next attempt
    await b.tick()
    (next_launch,) = [x for replica in (a, b) for x in replica.executor.launches if x is not launch]
    with call_context(ORG, None):
        next_plan = await a.runtime.workers.claim(
            worker_pb2.WorkerIdentity(job_id=job_id, attempt_id=next_launch.attempt_id)
        )
    assert next_plan.resume_from_uri == step + "state/"
    async with a.runtime.records.read() as session:
        job = (await session.execute(select(JobRecord).where(JobRecord.id == job_id))).scalar_one()
    assert (job.status, job.attempts, job.worker_failures) == (Status.RUNNING, 2, 0), "a pause is no failure"
