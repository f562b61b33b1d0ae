"""The models Tailor builds itself (``builtin:<name>`` sources): their names and how each is built.

Machines without network cannot download a base model, so Tailor builds small randomly
initialised ones from files in the repo: ``tailor-tiny`` (:mod:`services.common.tailor_tiny`)
and the tiny models of real families (:mod:`services.common.tiny_models`). Each builder is
deterministic and writes a complete Hugging Face model directory under the models directory.
Importing this module imports neither torch nor transformers; building does.

A built-in model also says what it is before it is built (its ``model_type``, so the trainer
knows its family without building it) and the training defaults that suit it: these tiny,
randomly initialised models learn at rates (2e-3, rank 8) that would wreck a real model, so
their defaults are their own rather than their family's. An entry of ``TAILOR_BASE_MODELS``
that sets a value still wins (:func:`services.common.base_models.resolve_spec`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from services.common import tailor_tiny
from services.common.tiny_models import TINY_MODELS


@dataclass(frozen=True)
class BuiltinModel:
    """A model Tailor builds: where it lives under a models directory, and how to build it there."""

    name: str
    directory: Callable[[Path], Path]  # models_dir -> the model's directory (not built)
    ensure: Callable[[Path], Path]  # models_dir -> the built model's directory
    model_type: str  # its config.json's model_type: the family whose rules apply
    # Base model entry fields (BaseModelSpec) this model defaults to, where an entry sets none.
    entry_defaults: Mapping[str, Any] = field(default_factory=dict)


# What a tiny random model needs to learn a reply in a few dozen steps (see tailor_tiny.build).
TINY_TRAINING = MappingProxyType({"lora_learning_rate": 2e-3, "lora_rank": 8, "max_seq_length": 512})
_TINY_MODEL_TYPES = {
    "tiny-llama3": "llama",
    "tiny-qwen2.5": "qwen2",
    "tiny-mistral": "mistral",
    "tiny-gemma2": "gemma2",
    "tiny-phi3": "phi3",
}

BUILTIN_MODELS: dict[str, BuiltinModel] = {
    tailor_tiny.NAME: BuiltinModel(
        tailor_tiny.NAME,
        tailor_tiny.model_dir,
        tailor_tiny.ensure_tailor_tiny,
        model_type="llama",
        # a Llama, but with a ChatML template and Qwen's (Hermes) tool-call format
        entry_defaults={**TINY_TRAINING, "tool_call_format": "hermes"},
    ),
    **{
        name: BuiltinModel(name, model.directory, model.ensure, _TINY_MODEL_TYPES[name], TINY_TRAINING)
        for name, model in TINY_MODELS.items()
    },
}


def builtin_model(name: str) -> BuiltinModel:
    """The built-in model called ``name``; KeyError when there is none."""
    return BUILTIN_MODELS[name]
