"""What a run reports about its steps: metrics events, checkpoint metrics and the results CSV.

The shapes are OpenAI's (docs/research/training.md §4): a metrics event's message reads
``Step 12/90: training loss=0.83, validation loss=0.91`` and its data carries the step's
metrics; the results file is a CSV with one row per step and the header
``step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy``, validation cells
empty on steps without a validation batch.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from services.trainer.worker.training import StepReport
from tailor.trainer.v1 import job_pb2, worker_service_pb2

RESULTS_COLUMNS = ("step", "train_loss", "train_accuracy", "valid_loss", "valid_mean_token_accuracy")
RESULTS_FILENAME = "step_metrics.csv"


def metrics_proto(report: StepReport) -> job_pb2.Metrics:
    """The step's metrics as the trainer stores them (unset fields were not measured)."""
    metrics = report.metrics
    return job_pb2.Metrics(
        step=report.step,
        total_steps=report.total_steps,
        epoch=report.epoch,
        train_loss=metrics.train_loss,
        train_mean_token_accuracy=metrics.train_mean_token_accuracy,
        valid_loss=metrics.valid_loss,
        valid_mean_token_accuracy=metrics.valid_mean_token_accuracy,
        full_valid_loss=metrics.full_valid_loss,
        full_valid_mean_token_accuracy=metrics.full_valid_mean_token_accuracy,
    )


def metrics_event(report: StepReport) -> worker_service_pb2.WorkerEvent:
    """A metrics event for the step, with OpenAI's message text."""
    metrics = report.metrics
    parts = [f"training loss={metrics.train_loss:.4f}"]
    if metrics.valid_loss is not None:
        parts.append(f"validation loss={metrics.valid_loss:.4f}")
    if metrics.full_valid_loss is not None:
        parts.append(f"full validation loss={metrics.full_valid_loss:.4f}")
    if metrics.reward_margin is not None:
        parts.append(f"reward margin={metrics.reward_margin:.4f}")
    return worker_service_pb2.WorkerEvent(
        level=job_pb2.EVENT_LEVEL_INFO,
        type=job_pb2.EVENT_TYPE_METRICS,
        message=f"Step {report.step}/{report.total_steps}: {', '.join(parts)}",
        metrics=metrics_proto(report),
    )


def message_event(message: str, *, warning: bool = False) -> worker_service_pb2.WorkerEvent:
    """A plain message event."""
    level = job_pb2.EVENT_LEVEL_WARN if warning else job_pb2.EVENT_LEVEL_INFO
    return worker_service_pb2.WorkerEvent(level=level, type=job_pb2.EVENT_TYPE_MESSAGE, message=message)


class ResultsLog:
    """One row per step, for the results CSV; saved with checkpoints so a resumed run keeps its history."""

    def __init__(self, rows: list[dict[str, Any]] | None = None) -> None:
        self.rows: list[dict[str, Any]] = list(rows or [])

    def record(self, report: StepReport) -> None:
        """Add the step's row."""
        metrics = report.metrics
        self.rows.append(
            {
                "step": report.step,
                "train_loss": metrics.train_loss,
                "train_accuracy": metrics.train_mean_token_accuracy,
                "valid_loss": metrics.valid_loss,
                "valid_mean_token_accuracy": metrics.valid_mean_token_accuracy,
            }
        )

    def to_csv(self) -> bytes:
        """The results file's bytes."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(RESULTS_COLUMNS)
        for row in self.rows:
            writer.writerow(_cell(row[column]) for column in RESULTS_COLUMNS)
        return buffer.getvalue().encode()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
