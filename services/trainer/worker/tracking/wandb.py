"""Reporting a job's steps to the experiment trackers the user asked for (OpenAI's ``integrations``).

Only ``wandb`` exists (docs/integrations.md). A tracker is a convenience next to the job's
own events and results file, so it must never cost the job: every call into ``wandb`` is
guarded, the first exception is reported once as a ``warn`` job event, and that tracker is
dropped for the rest of the attempt while training goes on. A server that cannot be reached
at the start (within ``worker_wandb_init_timeout_s``) is a warning too, and the run is written
offline instead.

The organization's W&B API key reaches the worker only as ``WANDB_API_KEY`` in its
environment (the trainer reads it from ``trainer_wandb_keys_dir``); a self-hosted server's
address as ``WANDB_BASE_URL``. Without a key the run is written offline under the worker's
W&B directory, where ``wandb sync`` uploads it later. Each attempt of a job resumes the same
run (its id is the job id), so a paused and resumed job is one run in W&B.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from services.trainer.tracker_secrets import API_KEY_VARIABLE, BASE_URL_VARIABLE
from services.trainer.worker.config import WorkerSettings
from services.trainer.worker.results import message_event
from services.trainer.worker.training import StepReport
from tailor.trainer.v1 import job_pb2, worker_service_pb2

log = structlog.get_logger("tailor.worker.tracking")

# W&B refuses longer tags.
MAX_TAG_LENGTH = 64
# A tracker's error quoted in an event is cut to this many characters.
MAX_REASON_LENGTH = 300

# Queues a job event (TrainerLink.post).
Post = Callable[[worker_service_pb2.WorkerEvent], None]


def default_tags(job: job_pb2.Job) -> list[str]:
    """Tailor's equivalents of OpenAI's default tags.

    OpenAI adds "openai/finetune", "openai/{base-model}" and "openai/{ftjob-…}".
    """
    tags = ("tailor/finetune", f"tailor/{job.base_model}", f"tailor/{job.id}")
    return [tag[:MAX_TAG_LENGTH] for tag in tags]


def wandb_directory(settings: WorkerSettings, job: job_pb2.Job) -> Path:
    """Where the job's W&B runs are written: ``worker_wandb_dir`` or ``{data_dir}/wandb``, per org and job."""
    root = settings.worker_wandb_dir or settings.data_dir / "wandb"
    return root / job.organization_id / job.id


def step_metrics(report: StepReport) -> dict[str, float | int]:
    """One step's values under OpenAI's metric names, plus the learning rate and the throughput."""
    metrics = report.metrics
    values: dict[str, float | int] = {
        "train_loss": metrics.train_loss,
        "train_mean_token_accuracy": metrics.train_mean_token_accuracy,
        "learning_rate": report.learning_rate,
        "epoch": report.epoch,
        "trained_tokens": report.trained_tokens,
    }
    if report.seconds > 0:
        values["tokens_per_second"] = report.input_tokens / report.seconds
    optional = {
        "valid_loss": metrics.valid_loss,
        "valid_mean_token_accuracy": metrics.valid_mean_token_accuracy,
        "full_valid_loss": metrics.full_valid_loss,
        "full_valid_mean_token_accuracy": metrics.full_valid_mean_token_accuracy,
        "reward_margin": metrics.reward_margin,
    }
    values.update({name: value for name, value in optional.items() if value is not None})
    return values


@dataclass
class WandbRun:
    """One W&B run of one job; ``run`` is None once the tracker failed (it is then left alone)."""

    integration: job_pb2.WandbIntegration
    run_id: str  # the job id (the job's second integration: "{job id}-2", ...)
    run: Any = None
    failed: bool = False


class Trackers:
    """The job's trackers for one attempt: :meth:`start`, :meth:`log` each step, :meth:`finish`."""

    def __init__(self, job: job_pb2.Job, directory: Path, post: Post, *, init_timeout_s: float) -> None:
        self._job = job
        self._init_timeout_s = init_timeout_s
        self._directory = directory
        self._post = post
        wanted = [item.wandb for item in job.integrations if item.type == "wandb"]
        self._runs = [
            WandbRun(integration, job.id if index == 0 else f"{job.id}-{index + 1}")
            for index, integration in enumerate(wanted)
        ]

    def start(self, config: dict[str, Any]) -> None:
        """Opens each run (blocking: call it off the event loop); a run that cannot start is dropped."""
        for tracked in self._runs:
            with self._guard(tracked, "start"):
                tracked.run = self._init(tracked, config)

    def log(self, report: StepReport) -> None:
        values = step_metrics(report)
        for tracked in self._runs:
            if tracked.run is not None:
                with self._guard(tracked, f"log step {report.step}"):
                    tracked.run.log(values, step=report.step)

    def finish(self, *, failed: bool) -> None:
        """Closes each run (uploading what is left when online); a failed attempt marks it failed."""
        for tracked in self._runs:
            if tracked.run is not None:
                with self._guard(tracked, "finish"):
                    tracked.run.finish(exit_code=1 if failed else 0)
                tracked.run = None

    def _init(self, tracked: WandbRun, config: dict[str, Any]) -> Any:
        """Online with the organization's key; offline without one, or when the server cannot be reached.

        The fallback run is "{run id}-offline": wandb keeps the failed online run's id taken.
        """
        integration = tracked.integration
        if os.environ.get(API_KEY_VARIABLE):
            try:
                return self._open(integration, tracked.run_id, config, offline=False)
            except Exception as error:  # unreachable, key refused...: the run is still written
                log.warning("wandb online start failed; going offline", error=repr(error))
                reason = f"{type(error).__name__}: {error}"[:MAX_REASON_LENGTH]
                self._post(
                    message_event(
                        f"Weights & Biases could not be reached ({reason}); the run of project "
                        f"{integration.project!r} is written offline instead.",
                        warning=True,
                    )
                )
                return self._open(integration, f"{tracked.run_id}-offline", config, offline=True)
        return self._open(integration, tracked.run_id, config, offline=True)

    def _open(
        self, integration: job_pb2.WandbIntegration, run_id: str, config: dict[str, Any], *, offline: bool
    ) -> Any:
        import wandb  # imported only by jobs that ask for it: it starts a service process

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

    @contextmanager
    def _guard(self, tracked: WandbRun, what: str) -> Iterator[None]:
        """Runs a wandb call; its first failure becomes one warn event and drops the run."""
        try:
            yield
        except Exception as error:  # any failure of the tracker, never the job's
            log.warning("wandb failed", what=what, error=repr(error))
            run, tracked.run = tracked.run, None
            if not tracked.failed:
                tracked.failed = True
                reason = f"{type(error).__name__}: {error}"[:MAX_REASON_LENGTH]
                self._post(
                    message_event(
                        f"Weights & Biases reporting to project {tracked.integration.project!r} stopped "
                        f"({what} failed: {reason}); training continues.",
                        warning=True,
                    )
                )
            if run is not None:
                try:
                    run.finish(exit_code=1)
                except Exception:  # the run is already broken; nothing more to tell
                    pass
