"""tiny-qwen2.5: a tiny Qwen2.5 (ChatML tokens, Qwen2.5's chat template, Hermes tool calls).

As Qwen2.5's small sizes: biases on the q, k and v projections (drawn like the weights, so a
server that dropped them would answer differently), tied embeddings, rope_theta 1000000, no
sliding window; no BOS is added, generation ends at ``<|im_end|>``. ``<tool_call>`` and
``<tool_response>`` are added tokens that are not special, as in Qwen2.5: a reply's tool calls
survive decoding with ``skip_special_tokens``.

Unlike tailor-tiny's (and the other tiny models'), the tokenizer splits text with Qwen2's own
pattern and NFC normalisation: transformers 5 loads any ``qwen2`` model's tokenizer as
``Qwen2Tokenizer``, which rebuilds its pre-tokenizer in code, ignoring ``tokenizer.json``'s. So
a newline that opens an assistant's text merges with the one closing ``<|im_start|>assistant\n``,
as in Qwen2.5 itself; replies that start with a newline are rare.
"""

from __future__ import annotations

from typing import Any

from services.common.tiny_models.recipe import TinyModel

# Qwen2's pre-tokenizer split (transformers' PRETOKENIZE_REGEX of Qwen2Tokenizer).
QWEN2_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
END_OF_TEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"


def _config(fields: dict[str, Any]) -> Any:
    from transformers import Qwen2Config

    return Qwen2Config(
        **fields,
        tie_word_embeddings=True,
        rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0},
        use_sliding_window=False,
        rms_norm_eps=1e-6,
    )


TINY_QWEN25 = TinyModel(
    name="tiny-qwen2.5",
    version=1,
    seed=20_261_202,
    model_class="Qwen2ForCausalLM",
    special_tokens=(END_OF_TEXT, IM_START, IM_END),
    plain_added_tokens=("<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>"),
    template="qwen25.jinja",
    pre_tokenizer_pattern=QWEN2_PATTERN,
    nfc=True,
    eos_token=IM_END,
    pad_token=END_OF_TEXT,
    end_tokens=(IM_END, END_OF_TEXT),
    config_token_ids={"bos_token_id": END_OF_TEXT, "eos_token_id": IM_END, "pad_token_id": END_OF_TEXT},
    make_config=_config,
)
