"""Reporting a job's steps to the experiment trackers the user asked for (its ``integrations``).

:mod:`.trackers` is what every tracker shares (the guard that keeps a failing tracker from
costing the job, the step's metric names); :mod:`.wandb` and :mod:`.mlflow` are the two kinds.
"""

from __future__ import annotations

from services.trainer.worker.config import WorkerSettings
from services.trainer.worker.tracking.mlflow import MlflowTracker
from services.trainer.worker.tracking.trackers import Post, Tracker, Trackers
from services.trainer.worker.tracking.wandb import WandbTracker, wandb_directory
from tailor.trainer.v1 import job_pb2

__all__ = ["Trackers", "job_trackers", "wandb_directory"]


def job_trackers(job: job_pb2.Job, settings: WorkerSettings, post: Post) -> Trackers:
    """One tracker per integration of the job, numbered within its type (run ids, run tags)."""
    trackers: list[Tracker] = []
    counts = {"wandb": 0, "mlflow": 0}
    for integration in job.integrations:
        if integration.type not in counts:
            continue  # the trainer accepts no other type
        counts[integration.type] += 1
        number = counts[integration.type]
        if integration.type == "wandb":
            run_id = job.id if number == 1 else f"{job.id}-{number}"
            trackers.append(
                WandbTracker(
                    job,
                    integration.wandb,
                    run_id,
                    wandb_directory(settings, job),
                    post,
                    init_timeout_s=settings.worker_wandb_init_timeout_s,
                )
            )
        else:
            trackers.append(
                MlflowTracker(
                    job,
                    integration.mlflow,
                    number,
                    post,
                    request_timeout_s=settings.worker_mlflow_request_timeout_s,
                    request_retries=settings.worker_mlflow_request_retries,
                )
            )
    return Trackers(trackers, post)
