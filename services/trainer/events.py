"""A job's event log: what users read with ``jobs.list_events``, in OpenAI's words.

The messages follow the ones OpenAI's jobs emit ("Validating training file: file-…",
"Fine-tuning job started", "Step 12/90: training loss=0.83", "New fine-tuned model
created: ft:…", "The job has successfully completed"), so scripts and people reading
them see what they are used to.
"""

from __future__ import annotations

from typing import Any

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
