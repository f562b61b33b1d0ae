"""A job's event log: what users read with ``jobs.list_events``, in OpenAI's words.

The messages follow the ones OpenAI's jobs emit ("Validating training file: file-…",
"Fine-tuning job started", "Step 12/90: training loss=0.83", "New fine-tuned model
created: ft:…", "The job has successfully completed"), so scripts and people reading
them see what they are used to.

Every event is also a log line of the trainer (:class:`JobLog`), so the terminal of
``make up`` shows each job's course: created, started, its steps and losses, checkpoints,
and how it ended, with the error. Metrics events come every few steps; the log takes one
per job every :data:`PROGRESS_LOG_INTERVAL_S`, and always the last step and an epoch's
full validation loss.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.ids import new_id
from services.trainer.conversions import set_fields
from services.trainer.records import EventRecord, JobRecord, now
from tailor.trainer.v1 import job_pb2, worker_service_pb2

INFO = job_pb2.EventLevel.Name(job_pb2.EVENT_LEVEL_INFO)
WARN = job_pb2.EventLevel.Name(job_pb2.EVENT_LEVEL_WARN)
ERROR = job_pb2.EventLevel.Name(job_pb2.EVENT_LEVEL_ERROR)
MESSAGE = job_pb2.EventType.Name(job_pb2.EVENT_TYPE_MESSAGE)
METRICS = job_pb2.EventType.Name(job_pb2.EVENT_TYPE_METRICS)

PROGRESS_LOG_INTERVAL_S = 5.0
_LOG_LEVELS = {INFO: logging.INFO, WARN: logging.WARNING, ERROR: logging.ERROR}

log = structlog.get_logger("tailor.trainer.jobs")


class JobLog:
    """Writes a job's events to the log: every message, metrics at most one per job per interval."""

    def __init__(
        self,
        interval_s: float = PROGRESS_LOG_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
        max_jobs: int = 1024,
    ) -> None:
        self._interval_s = interval_s
        self._clock = clock
        self._max_jobs = max_jobs
        self._last_logged: OrderedDict[str, float] = OrderedDict()  # job id -> clock

    def write(self, event: EventRecord) -> None:
        if event.type == METRICS and not self._admits(event.job_id, event.metrics or {}):
            return
        level = _LOG_LEVELS.get(event.level, logging.INFO)
        log.log(level, event.message, job=event.job_id, organization=event.organization_id)

    def _admits(self, job_id: str, metrics: dict[str, Any]) -> bool:
        """Whether this metrics event is logged: the job's first, one per interval, and milestones."""
        at = self._clock()
        last = self._last_logged.get(job_id)
        step = metrics.get("step")
        milestone = "full_valid_loss" in metrics or (step is not None and step == metrics.get("total_steps"))
        if last is not None and at - last < self._interval_s and not milestone:
            return False
        self._last_logged[job_id] = at
        self._last_logged.move_to_end(job_id)
        if len(self._last_logged) > self._max_jobs:  # jobs long finished: forget the oldest
            self._last_logged.popitem(last=False)
        return True


job_log = JobLog()


def add_event(
    session: AsyncSession,
    job: JobRecord,
    message: str,
    *,
    level: str = INFO,
    event_type: str = MESSAGE,
    metrics: dict[str, Any] | None = None,
) -> EventRecord:
    """Appends an event to the job's log (in the caller's transaction)."""
    event = EventRecord(
        id=new_id("ftevent"),
        job_id=job.id,
        organization_id=job.organization_id,
        created_at=now(),
        level=level,
        type=event_type,
        message=message,
        metrics=metrics,
    )
    session.add(event)
    job_log.write(event)
    return event


def add_worker_event(
    session: AsyncSession, job: JobRecord, event: worker_service_pb2.WorkerEvent
) -> EventRecord:
    """Stores an event a worker reported (a WorkerEvent), wording metrics the way OpenAI does when it gave no text."""
    is_metrics = event.type == job_pb2.EVENT_TYPE_METRICS
    metrics = set_fields(event.metrics) if is_metrics else None
    message = event.message or (metrics_message(event.metrics) if is_metrics else "")
    return add_event(
        session,
        job,
        message,
        level=job_pb2.EventLevel.Name(event.level or job_pb2.EVENT_LEVEL_INFO),
        event_type=METRICS if is_metrics else MESSAGE,
        metrics=metrics,
    )


def metrics_message(metrics: job_pb2.Metrics) -> str:
    """The text of a metrics event as OpenAI words it: "Step 12/90: training loss=0.83, validation loss=0.91"."""
    parts = []
    if metrics.HasField("train_loss"):
        parts.append(f"training loss={metrics.train_loss:.4g}")
    if metrics.HasField("valid_loss"):
        parts.append(f"validation loss={metrics.valid_loss:.4g}")
    if metrics.HasField("full_valid_loss"):
        parts.append(f"full validation loss={metrics.full_valid_loss:.4g}")
    total = f"/{metrics.total_steps}" if metrics.HasField("total_steps") else ""
    return f"Step {metrics.step}{total}: " + ", ".join(parts)
