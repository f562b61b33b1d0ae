"""The job's trackers for one attempt, and the one rule they share: a tracker never costs the job.

Each tracker (:mod:`.wandb`, :mod:`.mlflow`) is called through :meth:`Trackers._guard`: its
first exception is reported once as a ``warn`` job event, and that tracker is dropped for the
rest of the attempt while training goes on. Trackers are called from the training thread,
one at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

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


class Tracker(Protocol):
    """One run in one tracker; any of its methods may raise, which drops it."""

    # Names the run in events: "Weights & Biases reporting to project 'p'".
    description: str

    def start(self, config: dict[str, Any]) -> None: ...

    def log(self, values: dict[str, float | int], step: int) -> None: ...

    def finish(self, *, failed: bool) -> None: ...

    def abandon(self) -> None:
        """Closes what it can after a failure, raising nothing."""


def default_tags(job: job_pb2.Job) -> list[str]:
    """Tailor's equivalents of OpenAI's default tags.

    OpenAI adds "openai/finetune", "openai/{base-model}" and "openai/{ftjob-…}".
    """
    tags = ("tailor/finetune", f"tailor/{job.base_model}", f"tailor/{job.id}")
    return [tag[:MAX_TAG_LENGTH] for tag in tags]


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


def failure_reason(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:MAX_REASON_LENGTH]


@dataclass
class _Tracked:
    tracker: Tracker
    running: bool = False
    failed: bool = False


class Trackers:
    """The job's trackers for one attempt: :meth:`start`, :meth:`log` each step, :meth:`finish`."""

    def __init__(self, trackers: list[Tracker], post: Post) -> None:
        self._tracked = [_Tracked(tracker) for tracker in trackers]
        self._post = post

    def start(self, config: dict[str, Any]) -> None:
        """Opens each run (blocking: call it off the event loop); a run that cannot start is dropped."""
        for tracked in self._tracked:
            with self._guard(tracked, "start"):
                tracked.tracker.start(config)
                tracked.running = True

    def log(self, report: StepReport) -> None:
        values = step_metrics(report)
        for tracked in self._tracked:
            if tracked.running:
                with self._guard(tracked, f"log step {report.step}"):
                    tracked.tracker.log(values, report.step)

    def finish(self, *, failed: bool) -> None:
        """Closes each run (uploading what is left when online); a failed attempt marks it failed."""
        for tracked in self._tracked:
            if tracked.running:
                with self._guard(tracked, "finish"):
                    tracked.tracker.finish(failed=failed)
                tracked.running = False

    @contextmanager
    def _guard(self, tracked: _Tracked, what: str) -> Iterator[None]:
        """Runs a tracker's call; its first failure becomes one warn event and drops the tracker."""
        try:
            yield
        except Exception as error:  # any failure of the tracker, never the job's
            tracker = tracked.tracker
            log.warning("tracker failed", tracker=tracker.description, what=what, error=repr(error))
            was_running, tracked.running = tracked.running, False
            if not tracked.failed:
                tracked.failed = True
                self._post(
                    message_event(
                        f"{tracker.description} stopped ({what} failed: {failure_reason(error)}); "
                        "training continues.",
                        warning=True,
                    )
                )
            if was_running or what == "start":
                tracker.abandon()
