"""tiny-gemma: a tiny Gemma 2 (attention and final logit soft-capping, alternating sliding window).

Gemma's norms compute ``x * (1 + weight)`` (neutral weight 0) and its input embeddings are
multiplied by sqrt(hidden_size); embeddings are tied. The control tokens sit at Gemma's ids
(``<pad>`` 0, ``<eos>`` 1, ``<bos>`` 2, ``<unk>`` 3); the tokenizer puts ``<bos>`` in front of
encoded text and the template writes it too.
"""

from __future__ import annotations

from typing import Any

from services.common.tiny_models.recipe import TinyModel

BOS = "<bos>"
EOS = "<eos>"
END_OF_TURN = "<end_of_turn>"
SLIDING_WINDOW = 64


def _config(fields: dict[str, Any]) -> Any:
    from transformers import Gemma2Config

    return Gemma2Config(
        **fields,
        tie_word_embeddings=True,
        hidden_activation="gelu_pytorch_tanh",
        # Gemma 2 scales queries by 1/sqrt(query_pre_attn_scalar): its head_dim here.
        query_pre_attn_scalar=64,
        attn_logit_softcapping=50.0,
        final_logit_softcapping=30.0,
        sliding_window=SLIDING_WINDOW,
        rms_norm_eps=1e-6,
    )


TINY_GEMMA = TinyModel(
    name="tiny-gemma2",
    version=1,
    seed=20_261_204,
    model_class="Gemma2ForCausalLM",
    special_tokens=("<pad>", EOS, BOS, "<unk>", "<start_of_turn>", END_OF_TURN),
    template="gemma.jinja",
    bos_token=BOS,
    eos_token=EOS,
    pad_token="<pad>",
    unk_token="<unk>",
    adds_bos=True,
    end_tokens=(EOS, END_OF_TURN),
    config_token_ids={"bos_token_id": BOS, "eos_token_id": EOS, "pad_token_id": "<pad>"},
    make_config=_config,
    norm_offset=1.0,
)
