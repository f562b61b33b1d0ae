"""A job's files are parsed once on the worker: download, then one pass that checks and tokenizes.

Upload validated each line already (the dataset service), and the trainer judges a file by the
record that validation left (format, example count) without reading it. On the worker, no pass
counts or checks the examples before the one that loads them for training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from services.common.training_format import ExampleReader
from services.trainer.worker.run import run_worker
from tailor.trainer.v1 import job_pb2
from tests.integration.worker.conftest import WorkerSettingsFactory, secret_examples, training_plan
from tests.integration.worker.fakes import FakeServices


async def test_each_line_of_the_training_and_validation_files_is_read_once(
    tmp_path: Path,
    fakes: FakeServices,
    tailor_tiny_dir: Path,
    worker_settings: WorkerSettingsFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    training = fakes.datasets.add_jsonl("file-train", [*secret_examples(6), ""])
    validation = fakes.datasets.add_jsonl("file-valid", secret_examples(8)[6:])
    lines_read: list[str] = []
    read = ExampleReader.read

    def counting_read(self: ExampleReader, text: str) -> Any:
        lines_read.append(text)
        return read(self, text)

    monkeypatch.setattr(ExampleReader, "read", counting_read)
    fakes.trainer.plan = training_plan(
        tailor_tiny_dir,
        validation_file="file-valid",
        hyperparameters=job_pb2.Hyperparameters(n_epochs=1, batch_size=6),
    )

    assert await run_worker(worker_settings(tmp_path / "data", fakes), handle_signals=False) == 0

    assert fakes.trainer.requests("ReportSucceeded")
    assert sorted(lines_read) == sorted((training + validation).decode().splitlines())
