"""tiny-llama3: a tiny Llama 3.x (Llama 3.1's tokens, chat template and tool-call format).

As Llama 3 8B: untied input and output embeddings, rope_theta 500000, grouped-query attention;
the tokenizer puts ``<|begin_of_text|>`` in front of encoded text and the template writes it too.
Padding uses ``<|finetune_right_pad_id|>``, the token Llama 3.1 reserves for it.
"""

from __future__ import annotations

from typing import Any

from services.common.tiny_models.recipe import TinyModel

BEGIN_OF_TEXT = "<|begin_of_text|>"
END_OF_TEXT = "<|end_of_text|>"
EOT = "<|eot_id|>"
EOM = "<|eom_id|>"


def _config(fields: dict[str, Any]) -> Any:
    from transformers import LlamaConfig

    return LlamaConfig(
        **fields,
        tie_word_embeddings=False,
        rope_parameters={"rope_type": "default", "rope_theta": 500_000.0},
        rms_norm_eps=1e-5,
    )


TINY_LLAMA3 = TinyModel(
    name="tiny-llama3",
    version=1,
    seed=20_261_201,
    model_class="LlamaForCausalLM",
    special_tokens=(
        BEGIN_OF_TEXT,
        END_OF_TEXT,
        "<|start_header_id|>",
        "<|end_header_id|>",
        EOT,
        EOM,
        "<|python_tag|>",
        "<|finetune_right_pad_id|>",
    ),
    template="llama3.jinja",
    bos_token=BEGIN_OF_TEXT,
    eos_token=EOT,
    pad_token="<|finetune_right_pad_id|>",
    adds_bos=True,
    # Llama 3.1 Instruct's generation_config order: end of text, end of message, end of turn.
    end_tokens=(END_OF_TEXT, EOM, EOT),
    config_token_ids={
        "bos_token_id": BEGIN_OF_TEXT,
        "eos_token_id": EOT,
        "pad_token_id": "<|finetune_right_pad_id|>",
    },
    make_config=_config,
)
