"""A trainer killed mid-run and started again loses nothing: the job still ends succeeded.

The trainer runs as a real process (``python -m services.trainer``), configured only
through TAILOR_* variables, against the test's stand-in dataset service. It is killed
with SIGKILL while a worker is training (after the first checkpoint): the worker dies
with it, and the restarted trainer puts the job back in the queue and trains it from
that checkpoint. A job that was waiting in the queue is still there. A worker that
outlives its trainer (a Kubernetes pod) is watched again rather than replaced.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import psutil
from grpc_health.v1 import health_pb2, health_pb2_grpc

import tailor.trainer.v1.worker_service_pb2 as worker_pb2
from services.common.grpc_client import open_channel
from services.common.settings import CommonSettings
from services.trainer.config import TrainerSettings
from tailor.trainer.v1 import job_pb2
from tailor.trainer.v1 import model_registry_service_pb2 as registry_pb2
from tests.integration.trainer.conftest import ORG
from tests.integration.trainer.harness import (
    FAKE_WORKER_COMMAND,
    FakeDataset,
    PlayedWorker,
    RecordingExecutor,
    TrainerClient,
    eventually,
    running_trainer,
)
from tests.support.processes import free_port

# Long enough to be killed mid-run: 3 epochs of 3 steps of 0.3 s.
SLOW = "steps_per_epoch=3,step_s=0.3"
STARTUP_TIMEOUT_S = 60.0
RESTARTED = r"The trainer restarted; the job will continue from the checkpoint at step (\d+)\."


@contextlib.contextmanager
def trainer_process(environment: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen([sys.executable, "-m", "services.trainer"], env=environment)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


async def until_serving(address: str) -> None:
    async def serving() -> bool | None:
        async with grpc.aio.insecure_channel(address) as channel:
            try:
                response = await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=1
                )
            except grpc.aio.AioRpcError:
                return None
        return True if response.status == health_pb2.HealthCheckResponse.SERVING else None

    await eventually(serving, timeout=STARTUP_TIMEOUT_S, what=f"the trainer at {address}")


async def test_a_killed_trainer_restarts_and_the_job_still_succeeds(
    tmp_path: Path, dataset: tuple[FakeDataset, str], database_url: str
) -> None:
    files, dataset_addr = dataset
    address = f"127.0.0.1:{free_port()}"
    environment = {
        **os.environ,
        "TAILOR_DATA_DIR": str(tmp_path / "data"),
        "TAILOR_DATASET_ADDR": dataset_addr,
        "TAILOR_TRAINER_LISTEN": address,
        "TAILOR_TRAINER_ADDR": address,
        "TAILOR_TRAINER_WORKER_COMMAND": FAKE_WORKER_COMMAND,
        "TAILOR_TRAINER_DATABASE_URL": database_url,
        "TAILOR_TRAINER_MAX_CONCURRENT_JOBS": "1",
        "TAILOR_TRAINER_SCHEDULER_INTERVAL_S": "0.1",
        "TAILOR_TRAINER_HEARTBEAT_INTERVAL_S": "1",
        "TAILOR_TRAINER_HEARTBEAT_TIMEOUT_S": "5",
        "TAILOR_GRPC_SHUTDOWN_GRACE_S": "1",
        "TAILOR_LOG_FORMAT": "console",
    }
    channel = open_channel(address, CommonSettings(data_dir=tmp_path / "client"))
    trainer = TrainerClient(channel)
    try:
        with trainer_process(environment) as first:
            await until_serving(address)
            running = await trainer.create(
                ORG,
                training_file=files.add_file(ORG),
                method=job_pb2.Method(hyperparameters=job_pb2.Hyperparameters(n_epochs=3)),
                metadata={"fake_worker": SLOW},
            )
            queued = await trainer.create(ORG, training_file=files.add_file(ORG))
            await eventually(lambda: first_checkpoint(trainer, running.id), timeout=30, what="a checkpoint")
            assert (await trainer.job(ORG, queued.id)).status == job_pb2.JOB_STATUS_QUEUED
            workers = psutil.Process(first.pid).children(recursive=True)
            assert workers

            first.send_signal(signal.SIGKILL)
            first.wait()
            _, alive = psutil.wait_procs(workers, timeout=5)
            assert alive == [], "the workers must die with the trainer"

        with trainer_process(environment) as second:
            await until_serving(address)
            done = await trainer.wait_for(ORG, running.id, job_pb2.JOB_STATUS_SUCCEEDED, timeout=60)
            assert (
                await trainer.wait_for(ORG, queued.id, job_pb2.JOB_STATUS_SUCCEEDED, timeout=60)
            ).fine_tuned_model

            messages = await trainer.messages(ORG, running.id)
            # It continued from the newest checkpoint taken before the kill (the first, unless the machine is slow).
            restarted = [re.fullmatch(RESTARTED, m) for m in messages]
            step = next(match[1] for match in restarted if match)
            assert step in ("3", "6")
            assert f"Fine-tuning job started from the checkpoint at step {step}" in messages
            assert [c.step_number for c in await trainer.checkpoints(ORG, running.id)] == [9, 6, 3]
            model = await trainer.resolve(ORG, done.fine_tuned_model)
            assert model.kind == registry_pb2.MODEL_KIND_FINE_TUNED and model.adapter_uri

            second.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(second.wait, 30) == 0
    finally:
        await channel.close()


async def first_checkpoint(trainer: TrainerClient, job_id: str) -> bool | None:
    return True if await trainer.checkpoints(ORG, job_id) else None


async def test_a_worker_that_outlives_the_trainer_is_watched_again(
    settings: TrainerSettings, files: FakeDataset
) -> None:
    # A Kubernetes worker keeps running while its trainer restarts: the new trainer finds it
    # through the executor and keeps taking its reports instead of starting another attempt.
    executor = RecordingExecutor()
    async with running_trainer(settings, executor) as trainer:
        job = await trainer.create(ORG, training_file=files.add_file(ORG))
        worker = PlayedWorker(trainer, await executor.launched(job.id), ORG)
        plan = await worker.claim()
        await worker.started()
        await worker.step(1)
    assert executor.running == set()  # the trainer's shutdown stopped it (close)...
    executor.running.add(worker.identity.attempt_id)  # ...but a pod would have lived on

    async with running_trainer(settings, executor) as trainer:
        worker = PlayedWorker(trainer, worker.identity, ORG)
        assert await worker.step(2) == worker_pb2.WORKER_DIRECTIVE_CONTINUE
        assert (await worker.succeeded(plan)).status == job_pb2.JOB_STATUS_SUCCEEDED
        assert len(executor.launches) == 1
        assert not any(m.startswith("The trainer restarted") for m in await trainer.messages(ORG, job.id))
