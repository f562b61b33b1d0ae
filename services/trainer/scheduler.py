"""The scheduler: moves jobs from waiting to training, and watches the workers that train them.

One loop, woken by changes (a new job, a resume, a worker gone) or every
``trainer_scheduler_interval_s``, does three things in turn:

1. **Files.** A job whose files were processed when it was created (the usual case: the
   SDK waits for processing) moves to ``queued`` without asking the dataset service
   again (:meth:`Scheduler.files_checked`). Jobs in ``validating_files`` whose files
   were still processing are checked again; processed files move the job to
   ``queued``, bad ones fail it (``invalid_training_file``). A job paused while its files
   are checked stays paused (see :mod:`services.trainer.lifecycle`) and, unless its files
   were found valid as the pause landed, is checked again once resumed.
2. **Workers.** Each launched worker is asked about through its executor. A worker
   gone while its job still expected results crashed; one silent for longer than the
   heartbeat timeout (or that never claimed its job) is lost and stopped. Either way
   the attempt is retried from the last checkpoint while retries last, or the job
   fails with a clear error. A worker that was cancelled or paused is released; a job
   resumed while its paused worker was on its way out is queued again only then (that worker
   keeps the job until it is gone, so no replica launches a second one), to continue from
   the pause checkpoint (see :mod:`services.trainer.lifecycle`).
3. **Queue.** While fewer than ``trainer_max_concurrent_jobs`` workers run, the
   queued jobs are launched, highest priority first and FIFO within a priority. Each
   launch gets a fresh attempt id; reports naming any other attempt are refused.
   A job is claimed for its attempt by an UPDATE that only succeeds while the job is
   still queued and unclaimed, so replicas sharing one database never both launch it.

The records are the truth and the loop only acts on them, so a restart loses nothing:
at start-up (:meth:`Scheduler.recover`) workers that survived (Kubernetes pods) are
watched again, and jobs whose worker is gone (local subprocesses die with the
trainer) go back to the queue, to continue from their last checkpoint.

Heartbeats are kept in memory against the monotonic clock: after a restart every
surviving worker simply starts a fresh timeout.

**Several replicas on one Postgres.** Only launching is safe (see :func:`_claim`,
tested by tests/integration/trainer/test_replicas.py); the rest still assumes one replica:

- Recovery at start-up treats every launched job as its own. A job whose worker this
  replica's executor cannot see (another replica's local subprocess) goes back to the
  queue and is trained again; a Kubernetes worker is seen by every replica, so a
  starting replica adopts the running ones' workers as well.
- Heartbeats, slots and stopping are per replica: ``trainer_max_concurrent_jobs`` is per
  replica; a worker's reports keep it alive only on the replica that watches it (one
  that reaches another replica through a load-balanced address is declared lost there);
  cancel and pause stop a worker at once only from its own replica, elsewhere it learns
  from the directive answering its next report.
- Other status changes (files validated, worker reports, cancel) read a job and write
  it back without a row lock, so under READ COMMITTED two replicas acting on one job at
  the same moment can both apply theirs (say, "Files validated" logged twice).
- A replica that dies leaves its jobs' attempts set until a replica starts and recovers them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.errors import TailorError
from services.common.internal_auth.setup import token_minter
from services.common.object_store import ObjectStore
from services.common.tenancy import call_context
from services.trainer.config import TrainerSettings
from services.trainer.dataset_client import DatasetFiles
from services.trainer.executors import Executor, WorkerLaunch, WorkerStatus, worker_environment
from services.trainer.executors.base import new_attempt_id
from services.trainer.file_checks import FilesVerdict, check_files
from services.trainer.lifecycle import (
    PAUSING,
    RESUMED_WHILE_PAUSING,
    Action,
    allowed,
    apply,
    end_attempt_badly,
    mark_failed,
    resume_point,
    state,
)
from services.trainer.records import CheckpointRecord, JobRecord, Status, TrainerRecords, job_by_id, now
from services.trainer.storage import discard_unregistered_outputs, output_prefix
from services.trainer.tracker_secrets import tracker_environment
from tailor.trainer.v1 import job_pb2

log = structlog.get_logger("tailor.trainer.scheduler")


@dataclass
class ActiveWorker:
    """A launched worker the scheduler watches (times are ``time.monotonic()``)."""

    launch: WorkerLaunch
    launched_at: float
    # The last report from the worker; None until it claimed its job.
    last_heard: float | None = None
    # When a pausing worker must be gone; None unless it was asked to pause.
    exit_deadline: float | None = None
    # Why launching it failed, if it did.
    launch_error: str = ""
    stopping: bool = False


class Scheduler:
    """The queue, the workers' watchdog and recovery at start-up; see the module docstring."""

    def __init__(
        self,
        settings: TrainerSettings,
        records: TrainerRecords,
        executor: Executor,
        dataset: DatasetFiles,
        store: ObjectStore,
    ) -> None:
        self._settings = settings
        self._records = records
        self._executor = executor
        self._dataset = dataset
        self._store = store
        self._active: dict[str, ActiveWorker] = {}  # by job id
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._background: set[asyncio.Task[Any]] = set()
        # Jobs whose files were found processed at creation: no second look needed. Memory
        # only; after a restart such a job is simply checked again.
        self._files_ready: set[str] = set()
        self._worker_trainer_addr = settings.trainer_addr

    # Life of the scheduler.

    async def start(self, worker_trainer_addr: str) -> None:
        """Recovers from the records, then runs the loop. ``worker_trainer_addr``: where workers reach the trainer."""
        self._worker_trainer_addr = worker_trainer_addr
        await self.recover()
        self._loop_task = asyncio.create_task(self._run(), name="trainer-scheduler")

    async def stop(self) -> None:
        """Stops the loop and the local workers (Kubernetes workers keep running and are found again)."""
        # The flag ends the loop even if a cancellation gets lost in a library on its way out.
        self._stopping = True
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self._executor.close()

    def wake(self) -> None:
        """Asks for a pass of the loop now (a job was queued, a slot was freed)."""
        self._wake.set()

    async def _run(self) -> None:
        while not self._stopping:
            try:
                await self.tick()
            except Exception:  # one bad pass (the database is down, say) must not end scheduling
                log.exception("scheduler pass failed")
            # asyncio.timeout rather than wait_for: in Python 3.11 wait_for can swallow a
            # cancellation that arrives as the event is set, and the loop would never stop.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._settings.trainer_scheduler_interval_s):
                    await self._wake.wait()
            self._wake.clear()

    async def tick(self) -> None:
        """One pass: files, workers, queue."""
        await self._check_waiting_files()
        await self._check_workers()
        await self._launch_queued()

    # What the RPCs tell the scheduler.

    def files_checked(self, job_id: str) -> None:
        """The job's files were processed and fit when it was created: it can be queued as it is."""
        self._files_ready.add(job_id)
        self.wake()

    def heard_from(self, job_id: str, attempt_id: str) -> None:
        """A report arrived from the worker: it is alive (the heartbeat)."""
        active = self._active.get(job_id)
        if active is not None and active.launch.attempt_id == attempt_id:
            active.last_heard = time.monotonic()

    def stop_worker(self, job_id: str) -> None:
        """Stops the job's worker now, if one runs (cancel; pause before the worker claimed the job)."""
        active = self._active.get(job_id)
        if active is not None and not active.stopping:
            active.stopping = True
            self._in_background(self._stop(active))

    async def _stop(self, active: ActiveWorker) -> None:
        try:
            await self._executor.stop(active.launch)
        except Exception:
            # Try again on the next pass: the worker must not keep its slot (and GPU) forever.
            log.exception("could not stop a worker; will try again", job_id=active.launch.job_id)
            active.stopping = False
            active.exit_deadline = time.monotonic()

    def expect_exit(self, job_id: str) -> None:
        """The job's worker was asked to pause: it has the pause timeout to checkpoint and exit."""
        active = self._active.get(job_id)
        if active is not None:
            active.exit_deadline = time.monotonic() + self._settings.trainer_pause_timeout_s

    def discard_outputs(self, job_id: str, organization_id: str) -> None:
        """Deletes, in the background, what a cancelled or failed job wrote beyond its kept checkpoints."""
        self._in_background(self._discard_outputs(job_id, organization_id))

    # Recovery.

    async def recover(self) -> None:
        """Picks up after a restart: watch the workers still running, re-queue the jobs whose worker is gone."""
        async with self._records.read() as session:
            jobs = (
                (await session.execute(select(JobRecord).where(JobRecord.attempt_id.is_not(None))))
                .scalars()
                .all()
            )
        for job in jobs:
            launch = WorkerLaunch(job.id, job.attempt_id or "", job.organization_id)
            try:
                status = await self._executor.status(launch)
            except Exception:
                log.exception("could not ask about a worker at start-up; treating it as gone", job_id=job.id)
                status = WorkerStatus(running=False)
            if status.running:
                started = time.monotonic()
                claimed = state(job) != Status.QUEUED
                self._active[job.id] = ActiveWorker(launch, started, last_heard=started if claimed else None)
                log.info(
                    "watching a worker that outlived the trainer", job_id=job.id, attempt_id=launch.attempt_id
                )
                if job.status in Status.FINISHED:
                    self.stop_worker(job.id)
                elif state(job) in (PAUSING, RESUMED_WHILE_PAUSING):
                    self.expect_exit(job.id)
                continue
            async with self._records.write() as session:
                current = await job_by_id(session, job.id)
                if current is None or current.attempt_id != launch.attempt_id:
                    continue
                if state(current) in (Status.RUNNING, Status.QUEUED):
                    # Not the worker's fault: this attempt does not count against the retries.
                    restarted = None
                    if current.status == Status.RUNNING:
                        where = await resume_point(session, current)
                        restarted = f"The trainer restarted; the job will continue from {where}."
                    apply(session, current, Action.RETRY, event=restarted)
                else:
                    await _release_attempt(session, current)
                discard = current.status in (Status.CANCELLED, Status.FAILED)
            if discard:
                self.discard_outputs(job.id, job.organization_id)
        self.wake()

    # 1. Files.

    async def _check_waiting_files(self) -> None:
        async with self._records.read() as session:
            waiting = (
                (await session.execute(select(JobRecord).where(JobRecord.status == Status.VALIDATING_FILES)))
                .scalars()
                .all()
            )
        for job in waiting:
            method = job_pb2.MethodType.Value(job.method_type)
            try:
                if job.id in self._files_ready:
                    self._files_ready.discard(job.id)
                    verdict = FilesVerdict()
                else:
                    with call_context(job.organization_id, None):
                        verdict = await check_files(
                            self._dataset, job.training_file, job.validation_file, method
                        )
            except TailorError as error:
                log.warning(
                    "could not check a job's files; will try again", job_id=job.id, error=error.message
                )
                continue
            waited_too_long = now() - job.created_at > self._settings.trainer_file_wait_timeout_s
            if verdict.processing and not waited_too_long:
                continue
            async with self._records.write() as session:
                current = await job_by_id(session, job.id)
                # The job may have been paused or cancelled since it was read: the table decides
                # what the verdict still changes (a pause is never overwritten).
                valid = verdict.problem is None and not verdict.processing
                action = Action.FILES_VALIDATED if valid else Action.FAIL
                if current is None or not allowed(state(current), action):
                    continue
                if verdict.problem is not None:
                    problem = verdict.problem
                    mark_failed(
                        session, current, code=problem.code, message=problem.message, param=problem.param
                    )
                elif verdict.processing:
                    mark_failed(
                        session,
                        current,
                        code="file_not_processed",
                        message=(
                            "The job's files were still being processed after "
                            f"{self._settings.trainer_file_wait_timeout_s:.0f} seconds."
                        ),
                        param="training_file",
                    )
                elif current.status == Status.PAUSED:
                    apply(session, current, action, event="Files validated; the job is queued when resumed")
                else:
                    apply(session, current, action, event="Files validated, moving job to queued state")

    # 2. Workers.

    async def _check_workers(self) -> None:
        start_timeout = self._settings.trainer_worker_start_timeout_s
        heartbeat_timeout = self._settings.trainer_heartbeat_timeout_s
        for job_id, active in list(self._active.items()):
            try:
                status = await self._executor.status(active.launch)
            except Exception:
                log.exception("could not ask about a worker; will try again", job_id=job_id)
                continue
            if not status.running:
                await self._worker_gone(active, status)
                continue
            if active.stopping:
                continue
            now_s = time.monotonic()
            if active.exit_deadline is not None and now_s > active.exit_deadline:
                log.warning("paused worker did not exit in time; stopping it", job_id=job_id)
                self.stop_worker(job_id)
            elif active.last_heard is None and now_s - active.launched_at > start_timeout:
                await self._worker_lost(
                    active, f"The training worker did not start within {start_timeout:.0f} seconds."
                )
            elif active.last_heard is not None and now_s - active.last_heard > heartbeat_timeout:
                await self._worker_lost(
                    active,
                    f"The training worker stopped responding (no heartbeat for {heartbeat_timeout:g} seconds).",
                )

    async def _worker_lost(self, active: ActiveWorker, message: str) -> None:
        """A silent worker: end its attempt (the job retries or fails), then stop it."""
        log.warning("worker lost", job_id=active.launch.job_id, attempt_id=active.launch.attempt_id)
        await self._end_attempt(active.launch, code="worker_lost", message=message)
        self.stop_worker(active.launch.job_id)

    async def _worker_gone(self, active: ActiveWorker, status: WorkerStatus) -> None:
        """A worker is no longer running: settle its job according to the job's status, then free its slot."""
        launch = active.launch
        async with self._records.read() as session:
            job = await job_by_id(session, launch.job_id)
        if job is not None and job.attempt_id == launch.attempt_id:
            if state(job) in (Status.RUNNING, Status.QUEUED):
                # It left without reporting success or failure.
                reason = active.launch_error or status.detail or "it exited without reporting a result"
                await self._end_attempt(
                    launch,
                    code="worker_crashed",
                    message=f"The training worker crashed: {reason}.",
                )
            async with self._records.write() as session:
                current = await job_by_id(session, launch.job_id)
                discard = False
                if current is not None and current.attempt_id == launch.attempt_id:
                    await _release_attempt(session, current)
                    discard = current.status in (Status.CANCELLED, Status.FAILED)
            if discard:
                await self._discard_outputs(launch.job_id, launch.organization_id)
        del self._active[launch.job_id]
        await self._executor.release(launch)
        log.info("worker released", job_id=launch.job_id, attempt_id=launch.attempt_id, detail=status.detail)
        self.wake()

    async def _end_attempt(self, launch: WorkerLaunch, *, code: str, message: str) -> None:
        async with self._records.write() as session:
            job = await job_by_id(session, launch.job_id)
            if job is None or job.attempt_id != launch.attempt_id:
                return
            if state(job) not in (Status.RUNNING, Status.QUEUED):
                return  # a pausing worker's job is let go of once the worker is gone, not retried
            await end_attempt_badly(
                session,
                job,
                code=code,
                message=message,
                retryable=True,
                retries=self._settings.trainer_worker_retries,
            )

    # 3. Queue.

    async def _launch_queued(self) -> None:
        free_slots = self._settings.trainer_max_concurrent_jobs - len(self._active)
        if free_slots <= 0:
            return
        launches = []
        async with self._records.write() as session:
            query = (
                select(JobRecord)
                .where(
                    JobRecord.status == Status.QUEUED,
                    JobRecord.attempt_id.is_(None),
                    # A job whose previous worker is still on its way out waits for it.
                    JobRecord.id.not_in(list(self._active)),
                )
                .order_by(JobRecord.priority.desc(), JobRecord.seq.asc())
                .limit(free_slots)
                # Postgres: jobs another replica is claiming right now are passed over rather
                # than waited for (SQLite ignores this).
                .with_for_update(skip_locked=True)
            )
            job_files: dict[str, list[str]] = {}
            # the trackers each job's integrations name: its worker gets their variables, no others'
            job_trackers: dict[str, frozenset[str]] = {}
            for job in (await session.execute(query)).scalars().all():
                attempt_id = new_attempt_id()
                if await _claim(session, job.id, attempt_id):
                    launches.append(WorkerLaunch(job.id, attempt_id, job.organization_id))
                    job_files[job.id] = [job.training_file, job.validation_file or ""]
                    job_trackers[job.id] = frozenset(str(i.get("type", "")) for i in job.integrations or ())
        for launch in launches:
            active = ActiveWorker(launch, launched_at=time.monotonic())
            self._active[launch.job_id] = active
            environment = worker_environment(
                self._settings,
                launch,
                trainer_addr=self._worker_trainer_addr,
                include_secrets=self._settings.trainer_executor == "local",
                worker_token=self._worker_token(launch, job_files[launch.job_id]),
                overrides=tracker_environment(
                    self._settings,
                    launch.organization_id,
                    trackers=job_trackers[launch.job_id],
                    include_secrets=self._settings.trainer_executor == "local",
                ),
            )
            try:
                await self._executor.launch(launch, environment)
            except Exception as error:
                # The next pass finds no worker and ends the attempt with this reason.
                log.exception("could not launch a worker", job_id=launch.job_id)
                active.launch_error = f"it could not be started ({error})"

    # Helpers.

    def _worker_token(self, launch: WorkerLaunch, files: list[str]) -> str:
        """The launch's job-scoped credential: its job, attempt, organization and files, until its deadline."""
        if self._settings.internal_auth_disabled:
            return ""
        minter = token_minter(self._settings)
        return minter.worker_token(
            organization=launch.organization_id,
            job_id=launch.job_id,
            attempt_id=launch.attempt_id,
            files=files,
            expires_at=time.time() + self._settings.trainer_worker_token_ttl_s,
        )

    async def _discard_outputs(self, job_id: str, organization_id: str) -> None:
        async with self._records.read() as session:
            kept = (
                await session.execute(
                    select(CheckpointRecord.adapter_uri, CheckpointRecord.state_uri).where(
                        CheckpointRecord.job_id == job_id
                    )
                )
            ).all()
        prefixes = [prefix for row in kept for prefix in row]
        await discard_unregistered_outputs(self._store, output_prefix(organization_id, job_id), prefixes)

    def _in_background(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(_log_failure)


async def _claim(session: AsyncSession, job_id: str, attempt_id: str) -> bool:
    """Gives a queued job to ``attempt_id`` unless another replica's attempt got it first.

    The condition is checked by the UPDATE itself, so two replicas cannot both win: Postgres
    re-reads a row another transaction changed before updating it, and SQLite takes its
    write lock before reading (the SELECT above runs outside that lock on SQLite).
    """
    claimed = await session.execute(
        update(JobRecord)
        .where(JobRecord.id == job_id, JobRecord.status == Status.QUEUED, JobRecord.attempt_id.is_(None))
        .values(attempt_id=attempt_id, attempts=JobRecord.attempts + 1)
        .execution_options(synchronize_session=False)
    )
    return claimed.rowcount == 1  # type: ignore[attr-defined]


async def _release_attempt(session: AsyncSession, job: JobRecord) -> None:
    """The job's worker is gone: a pausing job lets go of it (not a failed attempt), any other ends it."""
    if not allowed(state(job), Action.WORKER_LEFT):
        job.attempt_id = None
        return
    event = None
    if state(job) == RESUMED_WHILE_PAUSING:
        where = await resume_point(session, job)
        event = f"The paused worker has stopped; the job continues from {where}."
    apply(session, job, Action.WORKER_LEFT, event=event)


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("background work failed", error=repr(task.exception()))
