"""tiny-phi: a tiny Phi-3/Phi-4-mini (fused qkv_proj and gate_up_proj; Phi-4-mini's tokens and tools).

As Phi-4-mini: tied embeddings, rotary embedding on 3/4 of each head (partial_rotary_factor
0.75), no sliding window, no BOS added. ``<|tool_call|>`` and ``<|/tool_call|>`` are added
tokens that are not special, so a reply's tool calls survive decoding with ``skip_special_tokens``.
"""

from __future__ import annotations

from typing import Any

from services.common.tiny_models.recipe import TinyModel

END_OF_TEXT = "<|endoftext|>"
END = "<|end|>"


def _config(fields: dict[str, Any]) -> Any:
    from transformers import Phi3Config

    return Phi3Config(
        **fields,
        tie_word_embeddings=True,
        rope_parameters={"rope_type": "default", "rope_theta": 10_000.0, "partial_rotary_factor": 0.75},
        partial_rotary_factor=0.75,
        sliding_window=None,
        rms_norm_eps=1e-5,
    )


TINY_PHI = TinyModel(
    name="tiny-phi3",
    version=1,
    seed=20_261_205,
    model_class="Phi3ForCausalLM",
    special_tokens=(END_OF_TEXT, "<|system|>", "<|user|>", "<|assistant|>", END, "<|tool|>", "<|/tool|>"),
    plain_added_tokens=("<|tool_call|>", "<|/tool_call|>"),
    template="phi.jinja",
    bos_token=END_OF_TEXT,
    eos_token=END_OF_TEXT,
    pad_token=END_OF_TEXT,
    end_tokens=(END_OF_TEXT, END),
    config_token_ids={"bos_token_id": END_OF_TEXT, "eos_token_id": END_OF_TEXT, "pad_token_id": END_OF_TEXT},
    make_config=_config,
)
