"""One choice's generated tokens as text deltas, with stop strings cut out before they are streamed.

Two problems, solved together because the second works on the output of the first:

1. **Incremental detokenization.** A token is not always text on its own: byte-level BPE
   splits multi-byte UTF-8 characters over several tokens, and SentencePiece decodes a
   leading space differently at the start of a sequence. So each step decodes a short
   window of recent tokens and emits only what the newest ones added, and nothing while
   the text ends in an incomplete character (U+FFFD). This is the scheme of TGI and
   vLLM (``prefix_offset`` / ``read_offset``), at O(window) per token instead of
   decoding the whole output every step.
2. **Stop strings with hold-back.** Text is never streamed while it could still turn
   into the start of a stop string, so a client never sees half of one. When a stop
   string completes, everything before it is released and the choice stops; the stop
   string itself is not part of the output (OpenAI's behaviour).

Special tokens (end-of-turn and such) are skipped in the text; a stream may keep some of
them (:func:`skipped_special_ids`): the tool-call markers the service's parser needs, such
as Mistral's ``[TOOL_CALLS]``, for a request with tools. Both engines decode that way (the
vllm engine through this class too, for such requests), so no other special token, end of
sequence included, ever becomes text.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

_INCOMPLETE_CHARACTER = "\ufffd"


def skipped_special_ids(tokenizer: PreTrainedTokenizerBase, keep: Collection[str]) -> frozenset[int]:
    """Ids of ``tokenizer``'s special tokens except those whose text is in ``keep``.

    Decoding the other ids without them is decoding with ``skip_special_tokens`` (the
    tokenizers library skips exactly the added tokens marked special), less the kept ones.
    """
    return frozenset(
        token_id
        for token_id, token in tokenizer.added_tokens_decoder.items()
        if token.special and token.content not in keep
    )


class SkippedTokens:
    """What each request's text leaves out, by the special tokens it keeps; worked out once per set kept."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        self._tokenizer = tokenizer
        self._by_kept: dict[frozenset[str], frozenset[int]] = {}

    def __call__(self, keep: frozenset[str]) -> frozenset[int] | None:
        """``skipped_ids`` for a :class:`TextStream`: None (every special token) when nothing is kept."""
        if not keep:
            return None
        if keep not in self._by_kept:
            self._by_kept[keep] = skipped_special_ids(self._tokenizer, keep)
        return self._by_kept[keep]


class TextStream:
    """Feeds one choice's tokens in, gets the text to stream out; see the module docstring."""

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        stop: Sequence[str] = (),
        *,
        skipped_ids: frozenset[int] | None = None,
    ) -> None:
        """``skipped_ids``: tokens left out of the text (:func:`skipped_special_ids`); None: all special ones."""
        self._tokenizer = tokenizer
        self._stop = tuple(stop)
        self._skipped_ids = skipped_ids
        self._tokens: list[int] = []
        # tokens[prefix_offset:read_offset] were already turned into text; decoding them
        # again gives the context the newest tokens' text is measured against.
        self._prefix_offset = 0
        self._read_offset = 0
        # Decoded text not yet streamed because it may be the start of a stop string.
        self._held = ""
        self.stopped = False

    def push(self, token_id: int) -> str:
        """Add a generated token; return the text that can be streamed now ('' if none).

        After a stop string completes, :attr:`stopped` is True and later tokens are ignored.
        """
        if self.stopped:
            return ""
        self._held += self._decode_next(token_id)
        return self._release()

    def flush(self) -> str:
        """The choice ended without a stop string: return whatever was held back."""
        released, self._held = self._held, ""
        return released

    def _decode_next(self, token_id: int) -> str:
        self._tokens.append(token_id)
        before = self._decode(self._tokens[self._prefix_offset : self._read_offset])
        after = self._decode(self._tokens[self._prefix_offset :])
        if len(after) <= len(before) or after.endswith(_INCOMPLETE_CHARACTER):
            return ""  # a special token, or part of a character: wait for more tokens
        self._prefix_offset, self._read_offset = self._read_offset, len(self._tokens)
        return after[len(before) :]

    def _decode(self, token_ids: list[int]) -> str:
        if self._skipped_ids is None:
            return self._tokenizer.decode(token_ids, skip_special_tokens=True)
        kept = [token_id for token_id in token_ids if token_id not in self._skipped_ids]
        return self._tokenizer.decode(kept, skip_special_tokens=False)

    def _release(self) -> str:
        if not self._stop:
            released, self._held = self._held, ""
            return released
        # Only held text can contain a stop string: streamed text never ended in a stop
        # string's prefix, so any occurrence starts inside what is held.
        found = [index for index in (self._held.find(s) for s in self._stop) if index >= 0]
        if found:
            self.stopped = True
            released, self._held = self._held[: min(found)], ""
            return released
        keep = _longest_stop_prefix_suffix(self._held, self._stop)
        cut = len(self._held) - keep
        released, self._held = self._held[:cut], self._held[cut:]
        return released


def _longest_stop_prefix_suffix(text: str, stops: Sequence[str]) -> int:
    """Length of the longest end of ``text`` that some stop string starts with."""
    longest = 0
    for stop in stops:
        for length in range(min(len(stop) - 1, len(text)), longest, -1):
            if stop.startswith(text[-length:]):
                longest = length
                break
    return longest
