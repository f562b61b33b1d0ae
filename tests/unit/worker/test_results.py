"""Metrics events, the results CSV and failure codes read as OpenAI's do."""

from __future__ import annotations

import csv
import io

import torch

from services.common.object_store import ObjectStoreUnavailable
from services.trainer.worker.failures import job_failure
from services.trainer.worker.results import ResultsLog, metrics_event
from services.trainer.worker.training import StepMetrics, StepReport
from tailor.trainer.v1 import job_pb2


def report(step: int, metrics: StepMetrics) -> StepReport:
    return StepReport(
        step=step, total_steps=4, epoch=1, end_of_epoch=step == 4, reports_metrics=True, metrics=metrics,
        learning_rate=1e-3, input_tokens=10, seconds=0.1, trained_tokens=10 * step,
    )  # fmt: skip


def test_the_results_csv_has_openais_header_and_empty_cells_where_nothing_was_measured() -> None:
    log = ResultsLog()
    log.record(report(1, StepMetrics(train_loss=1.25, train_mean_token_accuracy=0.5)))
    log.record(report(2, StepMetrics(train_loss=1.0, train_mean_token_accuracy=0.75, valid_loss=1.5,
                                     valid_mean_token_accuracy=0.25)))  # fmt: skip

    rows = list(csv.reader(io.StringIO(log.to_csv().decode())))

    assert rows == [
        ["step", "train_loss", "train_accuracy", "valid_loss", "valid_mean_token_accuracy"],
        ["1", "1.25", "0.5", "", ""],
        ["2", "1", "0.75", "1.5", "0.25"],
    ]


def test_a_metrics_event_reads_like_openais() -> None:
    metrics = StepMetrics(train_loss=0.8312, train_mean_token_accuracy=0.9, valid_loss=0.91, valid_mean_token_accuracy=0.8,
                          full_valid_loss=0.95, full_valid_mean_token_accuracy=0.79)  # fmt: skip

    event = metrics_event(report(4, metrics))

    assert event.type == job_pb2.EVENT_TYPE_METRICS
    assert (
        event.message == "Step 4/4: training loss=0.8312, validation loss=0.9100, full validation loss=0.9500"
    )
    assert (event.metrics.step, event.metrics.total_steps, event.metrics.epoch) == (4, 4, 1)
    assert event.metrics.full_valid_mean_token_accuracy == 0.79


def test_a_step_without_validation_leaves_the_validation_metrics_unset() -> None:
    event = metrics_event(report(1, StepMetrics(train_loss=1.0, train_mean_token_accuracy=0.5)))
    assert not event.metrics.HasField("valid_loss") and not event.metrics.HasField("full_valid_loss")


def test_failures_map_to_clear_codes_and_say_whether_a_retry_could_help() -> None:
    out_of_memory = job_failure(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    outage = job_failure(ObjectStoreUnavailable("object store at minio:9000 unreachable"))
    crash = job_failure(RuntimeError("secret internal detail"))

    assert (out_of_memory.code, out_of_memory.retryable) == ("out_of_memory", False)
    assert "batch_size" in out_of_memory.message
    assert (outage.code, outage.retryable) == ("object_store_unavailable", True)
    assert "minio:9000" in outage.message
    assert (crash.code, crash.retryable) == ("internal_error", True)
    assert "secret" not in crash.message
