"""Where training workers run: one interface, a local-subprocess and a Kubernetes implementation."""

from __future__ import annotations

from services.trainer.config import TrainerSettings
from services.trainer.executors.base import Executor, WorkerLaunch, WorkerStatus, worker_environment

__all__ = ["Executor", "WorkerLaunch", "WorkerStatus", "open_executor", "worker_environment"]


def open_executor(settings: TrainerSettings) -> Executor:
    """The executor the settings name."""
    if settings.trainer_executor == "kubernetes":
        # Imported only here: the kubernetes client is heavy and unused by local runs.
        from services.trainer.executors.kubernetes import KubernetesExecutor

        return KubernetesExecutor(settings)
    from services.trainer.executors.local import LocalExecutor

    return LocalExecutor(settings)
