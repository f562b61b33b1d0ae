"""Tool-call parsers: every format, whole replies and the same replies streamed in every split."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from services.common.model_families import FAMILIES
from services.inference.tool_calls import (
    TOOL_CALL_FORMATS,
    ParsedReply,
    ParsedText,
    ToolCallStream,
    new_call_id,
    parse_reply,
    special_markers,
)

OPENAI_ID = re.compile(r"call_[A-Za-z0-9]{24}")
MISTRAL_ID = re.compile(r"[A-Za-z0-9]{9}")

WEATHER = {"name": "get_weather", "arguments": {"city": "Lisbon", "days": 2}}
NON_ASCII = {"name": "traduire", "arguments": {"texte": "Ça coûte 5 € — 東京", "q": 'say "hi"\\n'}}
NO_ARGUMENTS = {"name": "now", "arguments": {}}


def hermes(*calls: dict[str, Any], content: str = "") -> str:
    """As tailor-tiny's (and Qwen 2.5's) template writes an assistant turn."""
    bodies = [json.dumps({"name": c["name"], "arguments": c["arguments"]}) for c in calls]
    blocks = [f"<tool_call>\n{body}\n</tool_call>" for body in bodies]
    return "\n".join(([content] if content else []) + blocks)


def llama3(*calls: dict[str, Any]) -> str:
    return "; ".join(json.dumps({"name": c["name"], "parameters": c["arguments"]}) for c in calls)


def mistral(*calls: dict[str, Any], content: str = "") -> str:
    with_ids = [dict(c, id=f"a{i}b{i}c{i}d{i}e"[:9]) for i, c in enumerate(calls)]
    return content + "[TOOL_CALLS]" + json.dumps(with_ids)


def json_block(*calls: dict[str, Any], content: str = "") -> str:
    blocks = [f"```tool_call\n{json.dumps(c)}\n```" for c in calls]
    return "\n".join(([content] if content else []) + blocks)


def phi4(*calls: dict[str, Any], content: str = "") -> str:
    return content + "<|tool_call|>" + json.dumps(list(calls)) + "<|/tool_call|>"


WRITERS = {
    "hermes": hermes,
    "llama3_json": llama3,
    "mistral": mistral,
    "json_block": json_block,
    "phi4": phi4,
}
# llama3_json: the reply is only calls
CONTENT_BEFORE_CALLS = ("hermes", "mistral", "json_block", "phi4")


def calls_of(reply: ParsedReply) -> list[tuple[str, Any]]:
    return [(call.name, json.loads(call.arguments)) for call in reply.tool_calls]


def streamed(tool_format: str, pieces: list[str]) -> ParsedReply:
    """The reply as a stream gives it: content joined, calls in order."""
    stream = ToolCallStream(tool_format)  # type: ignore[arg-type]
    content, calls = [], []
    for piece in pieces:
        parsed = stream.push(piece)
        content.append(parsed.content)
        calls.extend(parsed.tool_calls)
    last = stream.finish()
    content.append(last.content)
    calls.extend(last.tool_calls)
    assert stream.called == bool(calls)
    text = "".join(content)
    return ParsedReply(text if text or not calls else None, tuple(calls))


def splits(text: str) -> list[list[str]]:
    """The text in one piece, in two at every boundary, and one character at a time."""
    return [[text], *([text[:i], text[i:]] for i in range(1, len(text))), list(text)]


def same(a: ParsedReply, b: ParsedReply) -> bool:
    """Equal but for the random ids."""
    return a.content == b.content and calls_of(a) == calls_of(b)


def test_every_family_format_has_a_parser() -> None:
    assert {f.tool_call_format for f in FAMILIES.values()} <= set(TOOL_CALL_FORMATS)
    assert set(WRITERS) == set(TOOL_CALL_FORMATS)


@pytest.mark.parametrize("tool_format", TOOL_CALL_FORMATS)
@pytest.mark.parametrize("calls", [[WEATHER], [WEATHER, NON_ASCII, NO_ARGUMENTS]], ids=["one", "three"])
def test_a_reply_of_calls_parses_whole_and_in_every_split(
    tool_format: str, calls: list[dict[str, Any]]
) -> None:
    text = WRITERS[tool_format](*calls)
    whole = parse_reply(tool_format, text)  # type: ignore[arg-type]
    assert whole.content is None
    assert calls_of(whole) == [(c["name"], c["arguments"]) for c in calls]
    for pieces in splits(text):
        assert same(streamed(tool_format, pieces), whole), pieces


@pytest.mark.parametrize("tool_format", CONTENT_BEFORE_CALLS)
def test_content_before_the_calls_stays_content(tool_format: str) -> None:
    text = WRITERS[tool_format](WEATHER, NO_ARGUMENTS, content="Let me look that up.")
    whole = parse_reply(tool_format, text)  # type: ignore[arg-type]
    assert whole.content == "Let me look that up."
    assert calls_of(whole) == [("get_weather", WEATHER["arguments"]), ("now", {})]
    for pieces in splits(text):
        assert same(streamed(tool_format, pieces), whole), pieces


def test_content_is_streamed_as_soon_as_it_cannot_be_a_call() -> None:
    stream = ToolCallStream("hermes")
    assert stream.push("Hello").content == "Hello"
    assert stream.push(" <tool").content == ""  # may be <tool_call>: held
    assert stream.push("box> is").content == " <toolbox> is"
    assert stream.push(" here\n").content == " here"  # a call may follow the newline
    assert stream.push("ok").content == "\nok"
    assert stream.finish() == ParsedText()


def test_a_call_is_emitted_once_when_it_closes() -> None:
    stream = ToolCallStream("hermes")
    assert stream.push('<tool_call>\n{"name": "get_weather", ').tool_calls == ()
    assert stream.push('"arguments": {"city": "Lisbon"}}\n').tool_calls == ()
    closed = stream.push("</tool_call>")
    assert [(c.name, c.arguments) for c in closed.tool_calls] == [("get_weather", '{"city": "Lisbon"}')]
    assert closed.content == "" and stream.called
    assert stream.finish().tool_calls == ()


def test_llama3_holds_a_reply_opening_with_a_brace_and_releases_what_is_not_a_call() -> None:
    stream = ToolCallStream("llama3_json")
    assert stream.push("{").content == ""
    assert stream.push(' "na').content == ""
    assert stream.push('me": 1}').content == '{ "name": 1}'  # whole JSON, not a call
    assert stream.push(" more").content == " more"
    other = ToolCallStream("llama3_json")
    assert other.push("{x").content == "{x"  # no key can follow: released at once
    plain = ToolCallStream("llama3_json")
    assert plain.push("The answer is {").content == "The answer is {"


@pytest.mark.parametrize(
    ("tool_format", "text"),
    [
        ("hermes", "<tool_call>\n{not json}\n</tool_call>"),
        ("hermes", '<tool_call>\n{"arguments": {}}\n</tool_call>'),  # no name
        ("hermes", '<tool_call>\n{"name": "f", "arguments": "{}"}\n</tool_call>'),  # arguments not an object
        ("hermes", '<tool_call>\n{"name": "f", "arguments": {"x": NaN}}\n</tool_call>'),
        ("hermes", '<tool_call>\n{"name": "f", "arguments": {"x": 1'),  # cut off
        ("llama3_json", '{"name": "f"}'),
        ("llama3_json", '{"name": "f", "parameters": {"x": 1}'),
        ("mistral", "[TOOL_CALLS]not json"),
        ("mistral", '[TOOL_CALLS][{"name": "f", "arguments": {}}, 3]'),
        ("mistral", "[TOOL_CALLS][]"),
        ("json_block", '```tool_call\n{"name": "f", "arguments": [1]}\n```'),
        ("phi4", '<|tool_call|>[{"name": "f", "arguments": {}}<|/tool_call|>'),
        ("phi4", '<|tool_call|>{"nom": "f"}<|/tool_call|>'),
    ],
)
def test_an_unparseable_call_is_content_as_written(tool_format: str, text: str) -> None:
    for pieces in splits(text):
        reply = streamed(tool_format, pieces)
        assert reply == ParsedReply(text, ()), pieces
    assert parse_reply(tool_format, text) == ParsedReply(text, ())  # type: ignore[arg-type]


def test_a_bad_call_between_good_ones_is_content_and_the_good_ones_stay_calls() -> None:
    text = hermes(WEATHER) + "\n<tool_call>\n{oops}\n</tool_call>\n" + hermes(NO_ARGUMENTS)
    reply = parse_reply("hermes", text)
    assert reply.content == "<tool_call>\n{oops}\n</tool_call>"  # the newlines only separated calls
    assert calls_of(reply) == [("get_weather", WEATHER["arguments"]), ("now", {})]


@pytest.mark.parametrize("tool_format", TOOL_CALL_FORMATS)
@pytest.mark.parametrize(
    "text",
    ["Lisbon is sunny today.", "", "  spaced  \n", "Use {braces} and [brackets] and <tags> and ``` fences."],
)
def test_plain_text_is_content_unchanged(tool_format: str, text: str) -> None:
    assert parse_reply(tool_format, text) == ParsedReply(text, ())  # type: ignore[arg-type]
    for pieces in splits(text):
        assert streamed(tool_format, pieces) == ParsedReply(text, ()), pieces


def test_text_after_the_calls_is_content() -> None:
    reply = parse_reply("hermes", hermes(WEATHER) + "\nDone.")
    assert reply.content == "Done." and calls_of(reply) == [("get_weather", WEATHER["arguments"])]


def test_a_hermes_call_without_its_closing_tag_counts_when_its_json_is_whole() -> None:
    reply = parse_reply("hermes", '<tool_call>\n{"name": "now", "arguments": {}}\n</tool')
    assert reply.content is None and calls_of(reply) == [("now", {})]


def test_arguments_are_the_parsed_object_reserialised_with_non_ascii_kept() -> None:
    text = '<tool_call>\n{"name":"f","arguments":{"q":"caf\\u00e9 東京","n":[1,2.5]}}\n</tool_call>'
    (call,) = parse_reply("hermes", text).tool_calls
    assert call.arguments == '{"q": "café 東京", "n": [1, 2.5]}'


def test_ids_are_openai_like_and_fresh_per_call() -> None:
    reply = parse_reply("hermes", hermes(WEATHER, WEATHER))
    assert all(OPENAI_ID.fullmatch(call.id) for call in reply.tool_calls)
    assert reply.tool_calls[0].id != reply.tool_calls[1].id
    assert OPENAI_ID.fullmatch(new_call_id()) and MISTRAL_ID.fullmatch(new_call_id("mistral"))


def test_mistral_keeps_a_valid_id_the_model_wrote_and_replaces_others() -> None:
    text = (
        '[TOOL_CALLS][{"name": "a", "arguments": {}, "id": "Ab3De6Gh9"}, '
        '{"name": "b", "arguments": {}, "id": "call_x"}]'
    )
    first, second = parse_reply("mistral", text).tool_calls
    assert first.id == "Ab3De6Gh9"
    assert MISTRAL_ID.fullmatch(second.id) and second.id != "call_x"


def test_llama3_accepts_arguments_as_well_as_parameters_and_ignores_a_trailing_separator() -> None:
    reply = parse_reply("llama3_json", '{"name": "f", "arguments": {"x": 1}};')
    assert reply.content is None and calls_of(reply) == [("f", {"x": 1})]


def test_the_stream_refuses_misuse() -> None:
    with pytest.raises(ValueError, match="unknown tool call format"):
        ToolCallStream("xml")  # type: ignore[arg-type]
    stream = ToolCallStream("hermes")
    stream.finish()
    with pytest.raises(RuntimeError):
        stream.push("x")


def test_hermes_parses_what_tailor_tinys_template_writes(tokenizer) -> None:  # type: ignore[no-untyped-def]
    calls = [
        {"id": f"call_{i}", "type": "function", "function": {**c, "arguments": json.dumps(c["arguments"])}}
        for i, c in enumerate((WEATHER, NON_ASCII))
    ]
    conversation = [{"role": "user", "content": "Weather?"}]
    prompt = tokenizer.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
    full = tokenizer.apply_chat_template(
        [*conversation, {"role": "assistant", "content": "On it.", "tool_calls": calls}], tokenize=False
    )
    reply = full[len(prompt) :].removesuffix("<|im_end|>\n")
    parsed = parse_reply("hermes", reply)
    assert parsed.content == "On it."
    assert calls_of(parsed) == [(c["name"], c["arguments"]) for c in (WEATHER, NON_ASCII)]


class _Tokenizer:
    """Just what special_markers reads: the added tokens, special or not."""

    def __init__(self, special: list[str], plain: tuple[str, ...] | list[str] = ()) -> None:
        from tokenizers import AddedToken

        tokens = [AddedToken(t, special=True) for t in special]
        tokens += [AddedToken(t, special=False) for t in plain]
        self.added_tokens_decoder = dict(enumerate(tokens))


@pytest.mark.parametrize(
    ("tool_format", "tokenizer", "expected"),
    [
        # Mistral v0.3: [TOOL_CALLS] is a control token
        ("mistral", _Tokenizer(["</s>", "[INST]", "[TOOL_CALLS]"]), {"[TOOL_CALLS]"}),
        # a tokenizer where it is an ordinary added token: nothing to keep
        ("mistral", _Tokenizer(["</s>"], ["[TOOL_CALLS]"]), set()),
        # hermes models that mark <tool_call> special (Qwen 2.5 does not)
        ("hermes", _Tokenizer(["<tool_call>", "</tool_call>"]), {"<tool_call>", "</tool_call>"}),
        ("hermes", _Tokenizer(["<|im_end|>"], ["<tool_call>", "</tool_call>"]), set()),
        ("phi4", _Tokenizer(["<|end|>"], ["<|tool_call|>", "<|/tool_call|>"]), set()),
        ("phi4", _Tokenizer(["<|tool_call|>", "<|/tool_call|>"]), {"<|tool_call|>", "<|/tool_call|>"}),
        # Llama 3.1's <|python_tag|> is better dropped: the JSON after it is the call
        ("llama3_json", _Tokenizer(["<|python_tag|>", "<|eot_id|>"]), set()),
        ("json_block", _Tokenizer(["<end_of_turn>"]), set()),
    ],
)
def test_the_markers_decoding_keeps_are_those_that_are_special_tokens(
    tool_format: str, tokenizer: _Tokenizer, expected: set[str]
) -> None:
    assert special_markers(tool_format, tokenizer) == expected  # type: ignore[arg-type]
