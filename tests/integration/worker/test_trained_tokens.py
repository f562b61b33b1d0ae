"""trained_tokens is what OpenAI bills: every token of every training example, once per epoch.

The expected count is made here from the file and the tokenizer alone (the model's chat
template, as Hugging Face renders it), not with the worker's own data code.
"""

from __future__ import annotations

import json
from pathlib import Path

from transformers import AutoTokenizer

from services.trainer.worker.run import run_worker
from tailor.trainer.v1 import job_pb2
from tests.integration.worker.conftest import WorkerSettingsFactory, secret_examples, training_plan
from tests.integration.worker.fakes import FakeServices


async def test_trained_tokens_are_the_files_tokens_times_the_epochs(
    tmp_path: Path, fakes: FakeServices, tailor_tiny_dir: Path, worker_settings: WorkerSettingsFactory
) -> None:
    content = fakes.datasets.add_jsonl("file-train", secret_examples(10))
    fakes.trainer.plan = training_plan(tailor_tiny_dir, hyperparameters=job_pb2.Hyperparameters(n_epochs=3))

    assert await run_worker(worker_settings(tmp_path / "data", fakes), handle_signals=False) == 0

    tokenizer = AutoTokenizer.from_pretrained(str(tailor_tiny_dir))
    examples = [json.loads(line) for line in content.decode().splitlines()]
    rendered = [tokenizer.apply_chat_template(example["messages"], return_dict=True) for example in examples]
    per_epoch = sum(len(tokens["input_ids"]) for tokens in rendered)
    (succeeded,) = fakes.trainer.requests("ReportSucceeded")
    assert succeeded.trained_tokens == 3 * per_epoch
