"""Fixtures of the worker's unit tests: tailor-tiny (built once per session), its tokenizer, one CPU thread."""

from __future__ import annotations

import os
from pathlib import Path

# Nothing here may reach the Hugging Face hub; huggingface_hub reads this when first imported.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
from transformers import PreTrainedTokenizerBase

from services.common import tailor_tiny
from services.trainer.worker.models import load_tokenizer


@pytest.fixture(scope="session", autouse=True)
def one_cpu_thread() -> None:
    # The test machine's cores are shared; tailor-tiny is too small to gain from more threads.
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tailor_tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # One directory for the whole session, shared with the integration tests' fixture of the same name.
    return tailor_tiny.ensure_tailor_tiny(tmp_path_factory.getbasetemp() / "worker-models")


@pytest.fixture(scope="session")
def tokenizer(tailor_tiny_dir: Path) -> PreTrainedTokenizerBase:
    return load_tokenizer(str(tailor_tiny_dir))
