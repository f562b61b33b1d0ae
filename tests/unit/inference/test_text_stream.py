"""Streaming text from tokens: whole characters only, stop strings never half-streamed or included."""

from __future__ import annotations

from services.inference.text_stream import SkippedTokens, TextStream, skipped_special_ids


def stream(tokenizer, text: str, stop: tuple[str, ...] = ()) -> tuple[list[str], TextStream]:  # type: ignore[no-untyped-def]
    """Push ``text``'s tokens one by one; return the streamed pieces (flushed at the end unless stopped)."""
    text_stream = TextStream(tokenizer, stop)
    pieces = [text_stream.push(token) for token in tokenizer.encode(text)]
    if not text_stream.stopped:
        pieces.append(text_stream.flush())
    return pieces, text_stream


def test_the_pieces_add_up_to_the_decoded_text(tokenizer) -> None:  # type: ignore[no-untyped-def]
    text = "Hello, wörld! Ünïcode 日本語 and emoji 🎉 too."
    pieces, _ = stream(tokenizer, text)
    assert "".join(pieces) == text
    assert not any("\ufffd" in piece for piece in pieces), (
        "a character split over tokens is never streamed half"
    )


def test_special_tokens_are_not_text(tokenizer) -> None:  # type: ignore[no-untyped-def]
    text_stream = TextStream(tokenizer)
    pieces = [text_stream.push(t) for t in tokenizer.encode("ok")] + [
        text_stream.push(tokenizer.eos_token_id)
    ]
    assert "".join(pieces) == "ok" and pieces[-1] == ""


def test_a_stop_string_ends_the_text_before_it(tokenizer) -> None:  # type: ignore[no-untyped-def]
    pieces, text_stream = stream(tokenizer, "The answer is 42. END of story", stop=("END",))
    assert text_stream.stopped
    assert "".join(pieces) == "The answer is 42. "


def test_text_that_may_become_a_stop_string_is_held_back(tokenizer) -> None:  # type: ignore[no-untyped-def]
    text_stream = TextStream(tokenizer, ("<stop here>",))
    streamed = "".join(text_stream.push(t) for t in tokenizer.encode("value: <stop"))
    assert streamed == "value: ", "'<stop' could still become the stop string"
    assert text_stream.flush() == "<stop", "the choice ended otherwise: held text is released"


def test_the_earliest_of_several_stop_strings_wins(tokenizer) -> None:  # type: ignore[no-untyped-def]
    pieces, text_stream = stream(tokenizer, "one two three four", stop=("four", "two"))
    assert text_stream.stopped and "".join(pieces) == "one "


def test_tokens_after_a_stop_are_ignored(tokenizer) -> None:  # type: ignore[no-untyped-def]
    _, text_stream = stream(tokenizer, "a b STOP", stop=("STOP",))
    assert [text_stream.push(t) for t in tokenizer.encode(" more")] == [""] * len(tokenizer.encode(" more"))


# A Mistral reply with a tool call, a stray control token inside, then its end of sequence.
MISTRAL_REPLY = 'Sure.[TOOL_CALLS] [{"name": "f", "arguments": {}}][INST]</s>'


def mistral_tokens(tokenizer) -> list[int]:  # type: ignore[no-untyped-def]
    ids = tokenizer(MISTRAL_REPLY, add_special_tokens=False).input_ids
    assert tokenizer.convert_tokens_to_ids("[TOOL_CALLS]") in ids and ids[-1] == tokenizer.eos_token_id
    return ids


def test_by_default_every_special_token_is_skipped(mistral_tokenizer) -> None:  # type: ignore[no-untyped-def]
    text_stream = TextStream(mistral_tokenizer)
    text = "".join(text_stream.push(t) for t in mistral_tokens(mistral_tokenizer)) + text_stream.flush()
    assert text == 'Sure. [{"name": "f", "arguments": {}}]'


def test_a_stream_keeps_the_special_tokens_it_is_told_and_skips_the_others(  # type: ignore[no-untyped-def]
    mistral_tokenizer,
) -> None:
    skipped = skipped_special_ids(mistral_tokenizer, {"[TOOL_CALLS]"})
    assert mistral_tokenizer.convert_tokens_to_ids("[TOOL_CALLS]") not in skipped
    assert {mistral_tokenizer.eos_token_id, mistral_tokenizer.bos_token_id} <= skipped
    text_stream = TextStream(mistral_tokenizer, skipped_ids=skipped)
    pieces = [text_stream.push(t) for t in mistral_tokens(mistral_tokenizer)] + [text_stream.flush()]
    assert "".join(pieces) == 'Sure.[TOOL_CALLS] [{"name": "f", "arguments": {}}]'
    assert "[TOOL_CALLS]" in pieces, "the marker is streamed whole, with the token that is it"


def test_skipped_tokens_are_worked_out_once_per_set_kept(  # type: ignore[no-untyped-def]
    mistral_tokenizer,
) -> None:
    skipped_tokens = SkippedTokens(mistral_tokenizer)
    assert skipped_tokens(frozenset()) is None, "nothing kept: decode with skip_special_tokens"
    kept = frozenset({"[TOOL_CALLS]"})
    assert skipped_tokens(kept) is skipped_tokens(kept) == skipped_special_ids(mistral_tokenizer, kept)
