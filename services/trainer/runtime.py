"""Everything the trainer process holds, built once from settings: records, store, executor, scheduler, logic.

:class:`TrainerRuntime` is opened before the gRPC server serves (the records need
their tables), started once it listens (workers must be able to reach it), and
closed after it stopped.
"""

from __future__ import annotations

from services.common.object_store import open_object_store
from services.trainer.config import TrainerSettings
from services.trainer.dataset_client import DatasetFiles
from services.trainer.evals.evals import Evals
from services.trainer.evals.runs import EvalRuns
from services.trainer.evals.sampling import Sampling
from services.trainer.executors import Executor, open_executor
from services.trainer.jobs import JobService
from services.trainer.records import TrainerRecords
from services.trainer.registry import ModelRegistry
from services.trainer.scheduler import Scheduler
from services.trainer.worker_api import WorkerApi


class TrainerRuntime:
    """The trainer's parts, wired together."""

    def __init__(self, settings: TrainerSettings, *, executor: Executor | None = None) -> None:
        self.settings = settings
        self.records = TrainerRecords.open(settings)
        self.store = open_object_store(settings)
        self.dataset = DatasetFiles(settings)
        self.executor = executor if executor is not None else open_executor(settings)
        self.scheduler = Scheduler(settings, self.records, self.executor, self.dataset, self.store)
        self.registry = ModelRegistry(settings, self.records)
        self.jobs = JobService(settings, self.records, self.registry, self.dataset, self.scheduler)
        self.workers = WorkerApi(settings, self.records, self.scheduler, self.store)
        self.evals = Evals(self.records)
        self.eval_runs = EvalRuns(settings, self.records, self.registry, self.dataset)
        self.eval_sampling = Sampling(self.records)

    async def open(self) -> None:
        """Creates the tables that are missing."""
        await self.records.create_schema()

    async def start(self, worker_trainer_addr: str) -> None:
        """Recovers the jobs of a previous run and starts scheduling."""
        await self.scheduler.start(worker_trainer_addr)

    async def stop_scheduling(self) -> None:
        await self.scheduler.stop()

    async def close(self) -> None:
        await self.dataset.close()
        await self.store.close()
        await self.records.close()
