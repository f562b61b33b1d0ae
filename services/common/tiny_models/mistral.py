"""tiny-mistral: a tiny Mistral v0.3 (its control tokens, chat template and tool-call format), sliding as v0.1.

Mistral's tokenizer is a SentencePiece model; this one is the shared byte-level BPE with
Mistral's control tokens at Mistral's ids (``<unk>`` 0, ``<s>`` 1, ``</s>`` 2). The tokenizer
puts ``<s>`` in front of encoded text and the template writes it too. ``[TOOL_CALLS]`` is an
added token that is not special, so a reply's tool calls survive decoding with
``skip_special_tokens`` (Tailor's engines decode that way); the other control tokens are special.
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
    version=2,
    seed=20_261_203,
    model_class="MistralForCausalLM",
    special_tokens=(
        "<unk>",
        BOS,
        EOS,
        "[INST]",
        "[/INST]",
        "[AVAILABLE_TOOLS]",
        "[/AVAILABLE_TOOLS]",
        "[TOOL_RESULTS]",
        "[/TOOL_RESULTS]",
    ),
    plain_added_tokens=("[TOOL_CALLS]",),
    template="mistral.jinja",
    bos_token=BOS,
    eos_token=EOS,
    unk_token="<unk>",
    adds_bos=True,
    end_tokens=(EOS,),
    config_token_ids={"bos_token_id": BOS, "eos_token_id": EOS},
    make_config=_config,
)
