"""The models Tailor builds itself (``builtin:<name>`` sources): their names and how each is built.

Machines without network cannot download a base model, so Tailor builds small randomly
initialised ones from files in the repo: ``tailor-tiny`` (:mod:`services.common.tailor_tiny`)
and the tiny models of real families (:mod:`services.common.tiny_models`). Each builder is
deterministic and writes a complete Hugging Face model directory under the models directory.
Importing this module imports neither torch nor transformers; building does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from services.common import tailor_tiny
from services.common.tiny_models import TINY_MODELS


@dataclass(frozen=True)
class BuiltinModel:
    """A model Tailor builds: where it lives under a models directory, and how to build it there."""

    name: str
    directory: Callable[[Path], Path]  # models_dir -> the model's directory (not built)
    ensure: Callable[[Path], Path]  # models_dir -> the built model's directory


BUILTIN_MODELS: dict[str, BuiltinModel] = {
    tailor_tiny.NAME: BuiltinModel(tailor_tiny.NAME, tailor_tiny.model_dir, tailor_tiny.ensure_tailor_tiny),
    # tiny-llama3, tiny-qwen2.5, tiny-mistral, tiny-gemma2, tiny-phi3
    **{name: BuiltinModel(name, model.directory, model.ensure) for name, model in TINY_MODELS.items()},
}


def builtin_model(name: str) -> BuiltinModel:
    """The built-in model called ``name``; KeyError when there is none."""
    return BUILTIN_MODELS[name]
