"""tiny-mistral: a tiny Mistral v0.3 (control tokens, chat template, tool-call format), sliding as v0.1.

Mistral's tokenizer is a SentencePiece model; this one is the shared byte-level BPE with
Mistral's control tokens at Mistral's ids (``<unk>`` 0, ``<s>`` 1, ``</s>`` 2, ``[INST]`` 3,
``[/INST]`` 4, ``[TOOL_CALLS]`` 5, ...). The tokenizer puts ``<s>`` in front of encoded text and the
template writes it too. Every control token is special, ``[TOOL_CALLS]`` included, as in v0.3's
tokenizer: decoding with ``skip_special_tokens`` drops a reply's tool-call marker, so the inference
service has the engines keep it for requests with tools (``tool_calls.special_markers``).
"""

from __future__ import annotations

from typing import Any

from services.common.tiny_models.recipe import TinyModel

BOS = "<s>"
EOS = "</s>"
# Mistral-7B-v0.1 slid every layer over a 4096-token window (v0.3's config.json has none);
# this one's is shorter than the tests' prompts plus generations, so both engines must apply it
# (every layer slides here, where tiny-gemma2 alternates sliding and global layers).
SLIDING_WINDOW = 64


def _config(fields: dict[str, Any]) -> Any:
    from transformers import MistralConfig

    return MistralConfig(
        **fields,
        tie_word_embeddings=False,
        rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0},
        sliding_window=SLIDING_WINDOW,
        rms_norm_eps=1e-5,
    )


TINY_MISTRAL = TinyModel(
    name="tiny-mistral",
    version=3,
    seed=20_261_203,
    model_class="MistralForCausalLM",
    special_tokens=(
        "<unk>",
        BOS,
        EOS,
        "[INST]",
        "[/INST]",
        "[TOOL_CALLS]",
        "[AVAILABLE_TOOLS]",
        "[/AVAILABLE_TOOLS]",
        "[TOOL_RESULTS]",
        "[/TOOL_RESULTS]",
    ),
    template="mistral.jinja",
    bos_token=BOS,
    eos_token=EOS,
    unk_token="<unk>",
    adds_bos=True,
    end_tokens=(EOS,),
    config_token_ids={"bos_token_id": BOS, "eos_token_id": EOS},
    make_config=_config,
)
