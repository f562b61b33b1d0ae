"""Tiny models of real families, built from a seed (no download): Llama 3, Qwen2.5, Mistral, Gemma 2, Phi.

Each is a complete Hugging Face model directory (config.json, model.safetensors, tokenizer and
the family's chat template), small enough to train and serve on two CPU cores, made so that
everything Tailor does per family (templates, masks, tool-call formats, LoRA target modules,
vLLM's architectures) is exercised without the real weights. Each is a ``builtin:<name>``
source (:mod:`services.common.builtin_models`). One module per family holds its
:class:`~.recipe.TinyModel`; :mod:`.recipe` builds any of them, with the machinery shared with
tailor-tiny in :mod:`.building`.

Build one with ``python -m services.common.tiny_models <name> <dir>``. Importing this package
imports neither torch nor transformers; building does.
"""

from __future__ import annotations

from services.common.tiny_models.gemma import TINY_GEMMA
from services.common.tiny_models.llama3 import TINY_LLAMA3
from services.common.tiny_models.mistral import TINY_MISTRAL
from services.common.tiny_models.phi import TINY_PHI
from services.common.tiny_models.qwen25 import TINY_QWEN25
from services.common.tiny_models.recipe import TinyModel

TINY_MODELS: dict[str, TinyModel] = {
    model.name: model for model in (TINY_LLAMA3, TINY_QWEN25, TINY_MISTRAL, TINY_GEMMA, TINY_PHI)
}

__all__ = ["TINY_MODELS", "TinyModel"]
