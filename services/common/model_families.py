"""Model families: what differs between Llama 3, Qwen 2.5, Mistral, Gemma and Phi, in one table.

A family is named by the ``model_type`` of a Hugging Face ``config.json`` (``llama``, ``qwen2``,
``mistral``, ``gemma2``, ``phi3``). Everything Tailor does differently per family is a field of
:class:`ModelFamily`, and nothing else in the code branches on a family's name:

- **Training defaults**: the LoRA target modules (the real module names of the architecture,
  which vLLM must find in the served model), learning rate at multiplier 1.0, rank and max
  sequence length. A base model entry (``TAILOR_BASE_MODELS``) may override each; its own
  values win.
- **Tool calls**: the format the family's chat template writes an assistant's ``tool_calls``
  in, so the inference service parses a reply back into OpenAI's ``tool_calls``
  (:mod:`services.inference.tool_calls`).
- **System role**: whether the family's template has one. Gemma has none; its template folds
  the system message into the first user turn, as Gemma 3's published template does.

A model whose ``model_type`` is not listed gets :data:`GENERIC`: PEFT's ``all-linear`` and no
tool-call parsing (a reply stays text). This module imports nothing heavy: the gateway uses it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# How an assistant's tool calls look in the text a model generates:
# - hermes: <tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call> per call (Qwen 2.5, ChatML)
# - llama3_json: {"name": ..., "parameters": {...}} as the whole reply, calls separated by ";"
# - mistral: [TOOL_CALLS][{"name": ..., "arguments": {...}, "id": "<9 alphanumerics>"}, ...]
# - json_block: ```tool_call\n{"name": ..., "arguments": {...}}\n``` per call (Gemma: no native tokens)
# - phi4: <|tool_call|>[{"name": ..., "arguments": {...}}, ...]<|/tool_call|> (Phi-4-mini)
ToolCallFormat = Literal["hermes", "llama3_json", "mistral", "json_block", "phi4"]

ATTENTION_AND_MLP = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# Phi-3 fuses q, k and v into one projection, and gate and up into another.
PHI3_FUSED = ("qkv_proj", "o_proj", "gate_up_proj", "down_proj")
ALL_LINEAR = "all-linear"


@dataclass(frozen=True)
class ModelFamily:
    """What Tailor needs to know about one architecture family."""

    model_type: str
    lora_target_modules: tuple[str, ...] | Literal["all-linear"]
    lora_learning_rate: float
    lora_rank: int
    max_seq_length: int
    tool_call_format: ToolCallFormat | None
    has_system_role: bool = True


FAMILIES: dict[str, ModelFamily] = {
    family.model_type: family
    for family in (
        ModelFamily("llama", ATTENTION_AND_MLP, 2e-4, 16, 2048, "llama3_json"),
        ModelFamily("qwen2", ATTENTION_AND_MLP, 2e-4, 16, 2048, "hermes"),
        ModelFamily("mistral", ATTENTION_AND_MLP, 1e-4, 16, 2048, "mistral"),
        # Gemma fine-tunes diverge at the rates that suit Llama; Google's own recipes use 1e-4 or less.
        ModelFamily("gemma2", ATTENTION_AND_MLP, 1e-4, 16, 2048, "json_block", has_system_role=False),
        ModelFamily("phi3", PHI3_FUSED, 2e-4, 16, 2048, "phi4"),
    )
}

GENERIC = ModelFamily("generic", ALL_LINEAR, 2e-4, 16, 2048, None)


def family_of(model_type: str | None) -> ModelFamily:
    """The family of a ``config.json`` ``model_type``; :data:`GENERIC` when it is not listed."""
    return FAMILIES.get(model_type or "", GENERIC)
