"""A generated token's text, as log probabilities name it: each token alone, spelling the reply together."""

from __future__ import annotations

from services.inference.service import token_text


class _SentencePieceLike:
    """decode() of one token drops its leading space, as SentencePiece tokenizers' does."""

    pieces = {1: "\u2581Hello", 2: "world", 3: "\u2581"}

    def decode(self, ids: list[int]) -> str:
        return "".join(self.pieces[i] for i in ids).replace("\u2581", " ").lstrip(" ")

    def convert_ids_to_tokens(self, token_id: int) -> str:
        return self.pieces[token_id]


def test_a_tokens_text_keeps_its_leading_space() -> None:
    tokenizer = _SentencePieceLike()
    assert [token_text(tokenizer, i) for i in (1, 2, 3)] == [" Hello", "world", " "]
