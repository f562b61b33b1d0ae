"""The worker process: one job attempt from claim to final report, its signals and its exit code.

:func:`run_worker` opens the channels to the trainer and the dataset service (it has no object
store access: checkpoints go through the trainer), claims the job (``WorkerService.ClaimJob``
-> the :class:`TrainingPlan`), and runs the attempt (:class:`~.attempt.JobAttempt`: download,
prepare, train, upload, report). From the claim on, ``ReportEvents`` goes out whenever events
are queued and at least every ``heartbeat_interval_s`` (a heartbeat task, independent of how
slow a step is).

On failure: ``ReportFailed`` with the :class:`JobError` :func:`~.failures.job_failure` maps the
exception to. A stop (cancel, SIGTERM, a refused report) is not a failure: the worker ends
quietly. SIGTERM stops training at once, and the process exits after ``worker_stop_grace_s``
whatever it is doing.

Exit codes: 0 when the trainer knows the outcome (succeeded, failed, cancelled, paused, or it
refused us), 1 when it could not be told (unreachable), 143 after SIGTERM, 2 on bad settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import structlog
import torch

from services.common.grpc_client import open_channel
from services.common.tenancy import call_context
from services.trainer.worker.attempt import JobAttempt
from services.trainer.worker.config import WorkerSettings
from services.trainer.worker.failures import INTERNAL_ERROR, job_failure
from services.trainer.worker.progress import ReportRefused, Stop, TrainerLink, TrainerUnreachable
from services.trainer.worker.transfers import CheckpointLink
from tailor.dataset.v1 import dataset_service_pb2_grpc
from tailor.trainer.v1 import job_pb2, worker_service_pb2, worker_service_pb2_grpc

log = structlog.get_logger("tailor.worker")

EXIT_REPORTED = 0
EXIT_UNREPORTED = 1
EXIT_BAD_SETTINGS = 2
EXIT_TERMINATED = 128 + signal.SIGTERM


async def run_worker(settings: WorkerSettings, *, handle_signals: bool = True) -> int:
    """Train the job named in ``settings`` and report to the trainer; returns the exit code.

    ``handle_signals`` installs the SIGTERM handler (``python -m services.trainer.worker`` does;
    tests running the worker inside their own process do not).
    """
    missing = [
        name
        for name in ("worker_job_id", "worker_attempt_id", "worker_organization")
        if not getattr(settings, name)
    ]
    if not settings.worker_token.get_secret_value() and not settings.internal_auth_disabled:
        missing.append("worker_token")
    if missing:
        log.error("worker identity not set", missing=[f"TAILOR_{name.upper()}" for name in missing])
        return EXIT_BAD_SETTINGS
    if settings.worker_torch_threads:
        torch.set_num_threads(settings.worker_torch_threads)

    identity = worker_service_pb2.WorkerIdentity(
        job_id=settings.worker_job_id, attempt_id=settings.worker_attempt_id
    )
    structlog.contextvars.bind_contextvars(job_id=identity.job_id, attempt_id=identity.attempt_id)
    with call_context(settings.worker_organization, f"{identity.job_id}.{identity.attempt_id}"):
        # The attempt's token is this worker's only credential, sent as is on every call.
        token = settings.worker_token.get_secret_value() or None
        trainer_channel = open_channel(settings.trainer_addr, settings, audience="trainer", bearer_token=token)
        dataset_channel = open_channel(settings.dataset_addr, settings, audience="dataset", bearer_token=token)
        try:
            stub = worker_service_pb2_grpc.WorkerServiceStub(trainer_channel)
            link = TrainerLink(stub, identity)
            checkpoints = CheckpointLink(stub, identity)
            return await _run_attempt(
                settings, link, dataset_channel, checkpoints, handle_signals=handle_signals
            )
        finally:
            await dataset_channel.close()
            await trainer_channel.close()


async def _run_attempt(
    settings: WorkerSettings,
    link: TrainerLink,
    dataset_channel: grpc.aio.Channel,
    checkpoints: CheckpointLink,
    *,
    handle_signals: bool,
) -> int:
    try:
        plan = await link.claim()
    except ReportRefused as refusal:
        log.info("claim refused; nothing to do", reason=str(refusal))
        return EXIT_REPORTED
    except TrainerUnreachable as error:
        log.error("trainer unreachable; cannot claim the job", error=str(error))
        return EXIT_UNREPORTED
    log.info("job claimed", base_model=plan.base_model, output_prefix=plan.output_prefix)

    heartbeats = asyncio.create_task(link.heartbeats())
    async with _terminate_on_sigterm(link, settings.worker_stop_grace_s, enabled=handle_signals):
        scratch = Path(tempfile.mkdtemp(prefix="tailor-worker-", dir=settings.worker_scratch_dir))
        try:
            attempt = JobAttempt(
                settings,
                plan,
                link,
                checkpoints,
                dataset_service_pb2_grpc.DatasetServiceStub(dataset_channel),
                scratch,
            )
            await attempt.run()
        except ReportRefused as refusal:
            log.info("report refused; stopping", reason=str(refusal))
        except TrainerUnreachable as error:
            log.error("trainer unreachable; outcome not reported", error=str(error))
            return EXIT_UNREPORTED
        except Exception as error:
            if link.stop is not None and link.stop.is_immediate:
                log.info("stopped", reason=link.stop.value, during=repr(error))
            else:
                return await _report_failure(link, error)
        finally:
            heartbeats.cancel()
            shutil.rmtree(scratch, ignore_errors=True)
    return EXIT_TERMINATED if link.stop is Stop.TERMINATED else EXIT_REPORTED


async def _report_failure(link: TrainerLink, error: Exception) -> int:
    failure = job_failure(error)
    if failure.code == INTERNAL_ERROR:
        log.error("job failed unexpectedly", exc_info=error)
    else:
        log.warning("job failed", code=failure.code, message=failure.message)
    try:
        await link.failed(
            job_pb2.JobError(code=failure.code, message=failure.message, param=failure.param),
            retryable=failure.retryable,
        )
    except ReportRefused:
        return EXIT_REPORTED
    except TrainerUnreachable as unreachable:
        log.error("trainer unreachable; failure not reported", error=str(unreachable))
        return EXIT_UNREPORTED
    return EXIT_REPORTED


@contextlib.asynccontextmanager
async def _terminate_on_sigterm(link: TrainerLink, grace_s: float, *, enabled: bool) -> AsyncIterator[None]:
    """On SIGTERM: stop training at once, and exit regardless once ``grace_s`` has passed."""
    if not enabled:
        yield
        return
    loop = asyncio.get_running_loop()

    def on_sigterm() -> None:
        link.request_stop(Stop.TERMINATED)
        # A step, a model load or a download may not notice the stop in time; the trainer treats
        # the exit as a cancel either way, so nothing is lost by not waiting for them.
        loop.call_later(grace_s, os._exit, EXIT_TERMINATED)

    loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
