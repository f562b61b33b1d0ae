"""Token log probabilities in OpenAI's two shapes, from the inference contract's ``TokenLogprob``.

The inference service sends, per generated token, its text (the tokenizer decoding that token
alone), its log probability and the most likely alternatives: the model's raw log
probabilities, before ``logit_bias``, penalties, temperature and ``top_p`` (vLLM's default
``logprobs_mode``; see services/inference/token_sampling.py). The gateway only reshapes them:

- chat: ``{"content": [{"token", "logprob", "bytes", "top_logprobs": [{"token", "logprob",
  "bytes"}]}], "refusal": null}``, with ``bytes`` the token text's UTF-8;
- text completions: ``{"tokens", "token_logprobs", "top_logprobs", "text_offset"}``, where each
  ``top_logprobs`` entry maps the ``logprobs`` most likely tokens, and the chosen one, to their
  log probabilities (so up to ``logprobs + 1`` entries, as OpenAI says), and ``text_offset`` is
  each token's character offset in the choice's text, counted on across stream chunks.

A log probability JSON cannot carry (``-inf``) is OpenAI's ``-9999.0``, "very unlikely".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tailor.inference.v1 import inference_service_pb2 as pb

# OpenAI's value for a token too unlikely to have a finite log probability.
VERY_UNLIKELY = -9999.0


def _finite(logprob: float) -> float:
    return max(logprob, VERY_UNLIKELY)


def _chat_token(token: str, logprob: float) -> dict[str, Any]:
    return {"token": token, "logprob": _finite(logprob), "bytes": list(token.encode())}


def chat_logprobs(tokens: Sequence[pb.TokenLogprob]) -> dict[str, Any]:
    """A chat choice's (or chunk's) ``logprobs`` for ``tokens``."""
    return {
        "content": [
            {
                **_chat_token(token.token, token.logprob),
                "top_logprobs": [_chat_token(top.token, top.logprob) for top in token.top_logprobs],
            }
            for token in tokens
        ],
        "refusal": None,
    }


class CompletionLogprobsBuilder:
    """A text completion choice's ``logprobs``, chunk by chunk, its text offsets counted on between them."""

    def __init__(self) -> None:
        # Where the next token starts in the choice's text.
        self.offset = 0

    def shape(self, tokens: Sequence[pb.TokenLogprob]) -> dict[str, Any]:
        """The ``logprobs`` object of ``tokens``, the choice's next tokens."""
        offsets = []
        for token in tokens:
            offsets.append(self.offset)
            self.offset += len(token.token)
        return {
            "tokens": [token.token for token in tokens],
            "token_logprobs": [_finite(token.logprob) for token in tokens],
            "top_logprobs": [
                {
                    **{top.token: _finite(top.logprob) for top in token.top_logprobs},
                    token.token: _finite(token.logprob),
                }
                for token in tokens
            ],
            "text_offset": offsets,
        }
