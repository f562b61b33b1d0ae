"""A job's Weights & Biases run (OpenAI's ``wandb`` integration; docs/integrations.md).

The organization's W&B API key reaches the worker only as ``WANDB_API_KEY`` in its
environment (the trainer reads it from ``trainer_wandb_keys_dir``); a self-hosted server's
address as ``WANDB_BASE_URL``. Without a key the run is written offline under the worker's
W&B directory, where ``wandb sync`` uploads it later. A server that cannot be reached at the
start (within ``worker_wandb_init_timeout_s``) is a warning, and the run is written offline
instead. Each attempt of a job resumes the same run (its id is the job id), so a paused and
resumed job is one run in W&B.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import structlog

from services.trainer.tracker_secrets import API_KEY_VARIABLE, BASE_URL_VARIABLE
from services.trainer.worker.config import WorkerSettings
from services.trainer.worker.results import message_event
from services.trainer.worker.tracking.trackers import Post, default_tags, failure_reason
from tailor.trainer.v1 import job_pb2

log = structlog.get_logger("tailor.worker.tracking.wandb")


def wandb_directory(settings: WorkerSettings, job: job_pb2.Job) -> Path:
    """Where the job's W&B runs are written: ``worker_wandb_dir`` or ``{data_dir}/wandb``, per org and job."""
    root = settings.worker_wandb_dir or settings.data_dir / "wandb"
    return root / job.organization_id / job.id


class WandbTracker:
    """One W&B run of one job; ``run_id`` is the job id (the job's second integration: "{job id}-2", ...)."""

    def __init__(
        self,
        job: job_pb2.Job,
        integration: job_pb2.WandbIntegration,
        run_id: str,
        directory: Path,
        post: Post,
        *,
        init_timeout_s: float,
    ) -> None:
        self._job = job
        self._integration = integration
        self._run_id = run_id
        self._directory = directory
        self._post = post
        self._init_timeout_s = init_timeout_s
        self._run: Any = None
        self.description = f"Weights & Biases reporting to project {integration.project!r}"

    def start(self, config: dict[str, Any]) -> None:
        """Online with the organization's key; offline without one, or when the server cannot be reached.

        The fallback run is "{run id}-offline": wandb keeps the failed online run's id taken.
        """
        if os.environ.get(API_KEY_VARIABLE):
            try:
                self._run = self._open(self._run_id, config, offline=False)
                return
            except Exception as error:  # unreachable, key refused...: the run is still written
                log.warning("wandb online start failed; going offline", error=repr(error))
                self._post(
                    message_event(
                        f"Weights & Biases could not be reached ({failure_reason(error)}); the run of "
                        f"project {self._integration.project!r} is written offline instead.",
                        warning=True,
                    )
                )
                self._run = self._open(f"{self._run_id}-offline", config, offline=True)
                return
        self._run = self._open(self._run_id, config, offline=True)

    def log(self, values: dict[str, float | int], step: int) -> None:
        self._run.log(values, step=step)

    def finish(self, *, failed: bool) -> None:
        run, self._run = self._run, None
        run.finish(exit_code=1 if failed else 0)

    def abandon(self) -> None:
        run, self._run = self._run, None
        if run is not None:
            try:
                run.finish(exit_code=1)
            except Exception:  # the run is already broken; nothing more to tell
                pass

    def _open(self, run_id: str, config: dict[str, Any], *, offline: bool) -> Any:
        import wandb  # imported only by jobs that ask for it: it starts a service process

        integration = self._integration
        self._directory.mkdir(parents=True, exist_ok=True)
        # Key and server given explicitly: wandb reads its environment only once per process.
        explicit = {
            "base_url": os.environ.get(BASE_URL_VARIABLE),
            "api_key": os.environ.get(API_KEY_VARIABLE),
        }
        if offline:
            explicit.pop("api_key")
        run = wandb.init(
            project=integration.project,
            entity=integration.entity or None,
            name=integration.name or self._job.id,
            tags=[*default_tags(self._job), *integration.tags],
            config=config,
            id=run_id,
            resume="allow",
            dir=str(self._directory),
            mode="offline" if offline else "online",
            reinit="create_new",
            settings=wandb.Settings(
                **{name: value for name, value in explicit.items() if value},
                init_timeout=self._init_timeout_s,
                console="off",
                silent=True,
                disable_git=True,
                save_code=False,
            ),
        )
        where = f"offline under {run.dir}" if offline else f"to {run.url}"
        log.info("wandb run started", project=integration.project, offline=offline, run_dir=run.dir)
        self._post(
            message_event(f"Reporting metrics to Weights & Biases project {integration.project!r} {where}.")
        )
        return run
