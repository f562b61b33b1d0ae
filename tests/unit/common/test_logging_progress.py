"""A job's course in the trainer's log: what the ``make up`` terminal shows while a job trains.

Each job event is a log line; metrics events (a worker reports them every few steps) at
most one per job per interval, plus the last step and an epoch's full validation loss.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from services.common.logging import configure_logging
from services.trainer.events import ERROR, INFO, MESSAGE, METRICS, JobLog, add_event, add_worker_event
from services.trainer.records import EventRecord, JobRecord
from tailor.trainer.v1 import job_pb2
from tailor.trainer.v1 import worker_service_pb2 as worker_pb2


class FakeSession:
    """Stands in for the write transaction: keeps what is added."""

    def __init__(self) -> None:
        self.added: list[Any] = []

    def add(self, record: Any) -> None:
        self.added.append(record)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def console() -> Iterator[io.StringIO]:
    """The trainer's log as a person at a terminal reads it; process-wide logging put back after."""
    root = logging.getLogger()
    handlers, level, config = root.handlers[:], root.level, structlog.get_config()
    out = io.StringIO()
    configure_logging("trainer", fmt="console", stream=out)
    yield out
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.configure(**config)
    structlog.contextvars.clear_contextvars()


def job(job_id: str) -> JobRecord:
    return JobRecord(id=job_id, organization_id="org-a")


def metrics_event(job_id: str, step: int, total: int = 100, **metrics: float) -> EventRecord:
    return EventRecord(
        id=f"ftevent-{step}",
        job_id=job_id,
        organization_id="org-a",
        level=INFO,
        type=METRICS,
        message=f"Step {step}/{total}",
        metrics={"step": step, "total_steps": total, **metrics},
    )


def message_event(job_id: str, text: str) -> EventRecord:
    return EventRecord(job_id=job_id, organization_id="org-a", level=INFO, type=MESSAGE, message=text)


def logged_steps(console: io.StringIO) -> list[str]:
    """The steps the log shows, each with its job: "12/90 ftjob-a"."""
    return [f"{m[1]} {m[2]}" for m in re.finditer(r"Step (\d+/\d+).*job=(\S+)", console.getvalue())]


def test_a_reported_step_is_a_human_line_with_the_job_and_its_losses(console: io.StringIO) -> None:
    metrics = job_pb2.Metrics(step=12, total_steps=90, train_loss=0.8312, valid_loss=0.9105)
    reported = worker_pb2.WorkerEvent(type=job_pb2.EVENT_TYPE_METRICS, metrics=metrics)

    add_worker_event(FakeSession(), job("ftjob-progress-line"), reported)  # type: ignore[arg-type]

    line = console.getvalue()
    assert "Step 12/90: training loss=0.8312, validation loss=0.9105" in line
    assert "job=ftjob-progress-line" in line
    assert "[info" in line


def test_a_failed_job_is_an_error_line_with_its_error(console: io.StringIO) -> None:
    message = "The training file has 3 lines longer than the model's context window."

    add_event(FakeSession(), job("ftjob-failed-line"), message, level=ERROR)  # type: ignore[arg-type]

    line = console.getvalue()
    assert message in line and "job=ftjob-failed-line" in line and "[error" in line


def test_metrics_are_logged_at_most_once_per_interval_per_job(console: io.StringIO) -> None:
    clock = Clock()
    job_log = JobLog(interval_s=5.0, clock=clock)

    for step in (1, 2, 3):  # one report a second
        job_log.write(metrics_event("ftjob-a", step))
        clock.now += 1
    job_log.write(metrics_event("ftjob-b", 1))  # another job has its own interval
    clock.now += 2  # five seconds after ftjob-a's first line
    job_log.write(metrics_event("ftjob-a", 6))

    assert logged_steps(console) == ["1/100 ftjob-a", "1/100 ftjob-b", "6/100 ftjob-a"]


def test_the_last_step_and_an_epochs_full_validation_are_always_logged(console: io.StringIO) -> None:
    clock = Clock()
    job_log = JobLog(interval_s=5.0, clock=clock)

    job_log.write(metrics_event("ftjob-c", 49))
    job_log.write(metrics_event("ftjob-c", 50, full_valid_loss=0.7))  # the epoch's end
    job_log.write(metrics_event("ftjob-c", 99))  # dropped: within the interval
    job_log.write(metrics_event("ftjob-c", 100))  # the last step

    assert logged_steps(console) == ["49/100 ftjob-c", "50/100 ftjob-c", "100/100 ftjob-c"]


def test_messages_are_never_throttled(console: io.StringIO) -> None:
    job_log = JobLog(interval_s=5.0, clock=Clock())
    texts = ("Fine-tuning job started", "Checkpoint created at step 5", "The job has successfully completed")
    for text in texts:
        job_log.write(message_event("ftjob-d", text))

    assert console.getvalue().count("job=ftjob-d") == 3
