"""The fine-tuning file validator: good files of each format pass with their statistics,
and each kind of bad line is reported on its line with a precise reason."""

from __future__ import annotations

import json
from typing import Any

import pytest

from services.common.training_format import ExampleFormat
from services.dataset.validation import JsonlValidator, ValidationResult


def validate(data: str | bytes, *, chunk_size: int | None = None, **limits: int) -> ValidationResult:
    """Feed ``data`` to a validator in chunks of ``chunk_size`` bytes (all at once by default)."""
    raw = data.encode() if isinstance(data, str) else data
    validator = JsonlValidator(**limits)
    step = chunk_size or max(1, len(raw))
    for start in range(0, len(raw), step):
        validator.feed(raw[start : start + step])
    return validator.finish()


def jsonl(*examples: Any) -> str:
    return "".join(json.dumps(example) + "\n" for example in examples)


SYSTEM = {"role": "system", "content": "Marv is a factual chatbot that is also sarcastic."}
USER = {"role": "user", "content": "What's the capital of France?"}
ASSISTANT = {"role": "assistant", "content": "Paris, as if everyone doesn't know that already."}
CHAT = {"messages": [SYSTEM, USER, ASSISTANT]}
PROMPT_COMPLETION = {"prompt": "The capital of France is", "completion": " Paris."}
PREFERENCE = {
    "input": {"messages": [USER]},
    "preferred_output": [{"role": "assistant", "content": "Paris."}],
    "non_preferred_output": [{"role": "assistant", "content": "Lyon."}],
}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_current_weather",
        "description": "Get the current weather",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}},
    },
}


def test_a_chat_file_is_valid_with_its_statistics() -> None:
    result = validate(jsonl(CHAT, CHAT))
    assert result.valid and result.problems == () and result.summary() == ""
    assert result.statistics is not None
    assert result.statistics.format is ExampleFormat.CHAT
    characters = sum(len(m["content"]) for m in CHAT["messages"])
    assert (result.statistics.examples, result.statistics.messages) == (2, 6)
    assert (result.statistics.characters, result.statistics.trained_messages) == (2 * characters, 2)


def test_chat_features_openai_documents_are_accepted() -> None:
    weighted = {
        "messages": [
            {"role": "developer", "content": "Be brief.", "name": "ops"},
            {"role": "user", "content": [{"type": "text", "text": "Capital"}, {"type": "text", "text": "?"}]},
            {"role": "assistant", "content": "Paris", "weight": 0},
            {"role": "user", "content": "More sarcastic?"},
            {"role": "assistant", "content": "Paris, obviously.", "weight": 1},
        ]
    }
    tools = {
        "messages": [
            {"role": "user", "content": "Weather in San Francisco?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_current_weather", "arguments": '{"location": "SF"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "21.0"},
            {"role": "assistant", "content": "It is 21 degrees."},
        ],
        "tools": [WEATHER_TOOL],
        "parallel_tool_calls": False,
    }
    deprecated_functions = {
        "messages": [
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "function_call": {"name": "get_current_weather", "arguments": "{}"}},
            {"role": "function", "name": "get_current_weather", "content": "21.0"},
            {"role": "assistant", "content": "21 degrees."},
        ],
        "functions": [WEATHER_TOOL["function"]],
    }
    result = validate(jsonl(weighted, tools, deprecated_functions))
    assert result.valid, result.problems
    assert result.statistics is not None
    # weight 0 makes a message context, not a target: 1 + 2 + 2 trained assistant messages
    assert result.statistics.trained_messages == 5
    assert result.statistics.messages == 13


def test_a_prompt_completion_file_is_valid() -> None:
    result = validate(jsonl(PROMPT_COMPLETION, PROMPT_COMPLETION))
    assert result.statistics is not None
    assert result.statistics.format is ExampleFormat.PROMPT_COMPLETION
    assert result.statistics.examples == 2
    assert result.statistics.characters == 2 * len("The capital of France is Paris.")


def test_a_preference_file_is_valid_under_either_name_of_its_outputs() -> None:
    spec_names = {
        "input": {"messages": [SYSTEM, USER], "tools": [WEATHER_TOOL], "parallel_tool_calls": True},
        "preferred_completion": [{"role": "assistant", "content": "Paris."}],
        "non_preferred_completion": [{"role": "assistant", "content": "Lyon."}],
    }
    result = validate(jsonl(PREFERENCE, spec_names))
    assert result.statistics is not None
    assert result.statistics.format is ExampleFormat.PREFERENCE
    assert (result.statistics.examples, result.statistics.messages, result.statistics.trained_messages) == (
        2,
        7,
        4,
    )


def test_blank_lines_crlf_a_byte_order_mark_and_no_final_newline_are_tolerated() -> None:
    text = "\ufeff" + json.dumps(CHAT) + "\r\n\r\n   \n" + json.dumps(CHAT)
    result = validate(text)
    assert result.valid, result.problems
    assert result.lines == 4
    assert result.statistics is not None and result.statistics.examples == 2


def test_a_byte_order_mark_elsewhere_is_invalid_json() -> None:
    result = validate(jsonl(CHAT) + "\ufeff" + jsonl(CHAT))
    assert [(p.line, p.code) for p in result.problems] == [(2, "invalid_json")]


def test_bad_json_on_line_3_is_reported_on_line_3() -> None:
    result = validate(jsonl(CHAT, CHAT) + '{"messages": [}\n' + jsonl(CHAT))
    assert not result.valid and result.statistics is None
    assert [(p.line, p.code) for p in result.problems] == [(3, "invalid_json")]
    assert result.summary() == "1 problem: line 3: invalid JSON (Expecting value at column 15)"


def _message(**changes: Any) -> dict[str, Any]:
    return {"messages": [USER, {**ASSISTANT, **changes}]}


def _without(mapping: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in mapping.items() if k != key}


# (a good example of the same format, the bad line, the problem code, a fragment of the reason)
BAD_LINES: list[tuple[Any, bytes | Any, str, str]] = [
    (CHAT, b'{"messages": "\xff\xfe"}', "invalid_utf8", "byte 0xff"),
    (CHAT, b"{'messages': []}", "invalid_json", "Expecting property name"),
    (CHAT, b'{"messages": [1, 2]', "invalid_json", "Expecting ',' delimiter"),
    (CHAT, [CHAT], "not_an_object", "got a list"),
    (CHAT, {"conversation": []}, "unknown_format", 'keys found: "conversation"'),
    (CHAT, {"messages": []}, "missing_messages_list", "got an empty list"),
    (CHAT, {"messages": {"role": "user"}}, "missing_messages_list", "got an object"),
    (CHAT, {"messages": [USER, "hi"]}, "invalid_message", "messages[1]: a message must be an object"),
    (CHAT, {"messages": [{"content": "hi"}, ASSISTANT]}, "message_missing_key", "messages[0]: missing role"),
    (CHAT, {"messages": [{"role": "robot", "content": "x"}, ASSISTANT]}, "unrecognized_role", '"robot"'),
    (CHAT, _message(wieght=1), "unrecognized_key", 'messages[1]: unknown key "wieght"'),
    (
        CHAT,
        {"messages": [{"role": "user"}, ASSISTANT]},
        "message_missing_key",
        "messages[0]: missing content",
    ),
    (CHAT, {"messages": [{"role": "user", "content": 7}, ASSISTANT]}, "missing_content", "got a number"),
    (
        CHAT,
        {
            "messages": [
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]},
                ASSISTANT,
            ]
        },
        "unsupported_content",
        "only text parts",
    ),
    (CHAT, {"messages": [SYSTEM, USER]}, "missing_assistant_message", "no assistant message"),
    (CHAT, _message(weight=2), "invalid_weight", "weight must be 0 or 1, got 2"),
    (CHAT, _message(weight=True), "invalid_weight", "got true"),
    (CHAT, {"messages": [{**USER, "weight": 1}, ASSISTANT]}, "unrecognized_key", '"weight"'),
    (CHAT, _message(weight=0), "no_trained_messages", "every assistant message has weight 0"),
    (CHAT, _message(content=None), "missing_content", "needs content or tool_calls"),
    (
        CHAT,
        _message(tool_calls=[{"type": "function", "function": {"name": "f", "arguments": "{}"}}]),
        "invalid_tool_calls",
        "messages[1].tool_calls[0].id must be a string",
    ),
    (
        CHAT,
        _message(tool_calls=[{"id": "c", "type": "code", "function": {"name": "f", "arguments": "{}"}}]),
        "invalid_tool_calls",
        'type must be "function"',
    ),
    (
        CHAT,
        _message(tool_calls=[{"id": "c", "type": "function", "function": {"name": "f", "arguments": {}}}]),
        "invalid_tool_calls",
        "messages[1].tool_calls[0].function.arguments must be a string",
    ),
    (
        CHAT,
        {"messages": [USER, ASSISTANT, {"role": "tool", "content": "21"}]},
        "message_missing_key",
        "needs a string tool_call_id",
    ),
    (CHAT, {**CHAT, "tools": {"type": "function"}}, "invalid_tools", "tools must be a list"),
    (CHAT, {**CHAT, "tools": [{"type": "code_interpreter"}]}, "invalid_tools", "tools[0] must be an object"),
    (
        CHAT,
        {**CHAT, "parallel_tool_calls": "yes"},
        "invalid_tools",
        "parallel_tool_calls must be true or false",
    ),
    (CHAT, {**CHAT, "metadata": {}}, "unrecognized_key", 'the example: unknown key "metadata"'),
    (PROMPT_COMPLETION, {"prompt": 1, "completion": "x"}, "invalid_prompt", "got a number"),
    (PROMPT_COMPLETION, {"prompt": "x"}, "invalid_completion", "missing completion"),
    (PROMPT_COMPLETION, {"prompt": "x", "completion": ""}, "no_trained_messages", "completion is empty"),
    (PROMPT_COMPLETION, {**PROMPT_COMPLETION, "id": 3}, "unrecognized_key", '"id"'),
    (PREFERENCE, _without(PREFERENCE, "input"), "invalid_input", "missing input"),
    (
        PREFERENCE,
        {**PREFERENCE, "input": [USER]},
        "invalid_input",
        "input must be an object with messages, got a list",
    ),
    (
        PREFERENCE,
        {**PREFERENCE, "input": {"messages": [USER, ASSISTANT]}},
        "invalid_input",
        "must end with a user message",
    ),
    (PREFERENCE, _without(PREFERENCE, "preferred_output"), "invalid_output", "missing preferred_output"),
    (
        PREFERENCE,
        {**PREFERENCE, "non_preferred_output": []},
        "invalid_output",
        "non_preferred_output must be",
    ),
    (
        PREFERENCE,
        {**PREFERENCE, "preferred_output": [USER]},
        "invalid_output",
        'preferred_output[0]: must be an assistant message, not role "user"',
    ),
    (
        PREFERENCE,
        {**PREFERENCE, "preferred_output": [{**ASSISTANT, "weight": 1}]},
        "unrecognized_key",
        '"weight"',
    ),
    (
        PREFERENCE,
        {**PREFERENCE, "preferred_completion": PREFERENCE["preferred_output"]},
        "invalid_output",
        "both preferred_output and preferred_completion",
    ),
]


@pytest.mark.parametrize(("good", "bad", "code", "reason"), BAD_LINES, ids=[case[2] for case in BAD_LINES])
def test_each_bad_line_is_reported_on_its_line_with_a_precise_reason(
    good: Any, bad: bytes | Any, code: str, reason: str
) -> None:
    bad_line = bad if isinstance(bad, bytes) else json.dumps(bad).encode()
    data = jsonl(good, good).encode() + bad_line + b"\n" + jsonl(good).encode()
    result = validate(data)
    assert [(p.line, p.code) for p in result.problems] == [(3, code)], result.problems
    assert reason in result.problems[0].message
    assert result.statistics is None


def test_mixed_formats_are_reported_on_each_line_that_differs_from_the_first_example() -> None:
    result = validate(jsonl(CHAT, PROMPT_COMPLETION, CHAT, PREFERENCE))
    assert [(p.line, p.code) for p in result.problems] == [(2, "mixed_formats"), (4, "mixed_formats")]
    assert "a prompt/completion example, but line 1 is a chat example" in result.problems[0].message


def test_the_first_problems_are_kept_and_all_are_counted() -> None:
    result = validate("not json\n" * 25, max_problems=20)
    assert len(result.problems) == 20 and result.problem_count == 25
    assert [p.line for p in result.problems] == list(range(1, 21))
    assert result.summary().startswith("25 problems; first: line 1: invalid JSON")


@pytest.mark.parametrize("data", ["", "\n\n  \n"])
def test_a_file_without_examples_is_invalid_as_a_whole(data: str) -> None:
    result = validate(data)
    assert [(p.line, p.code) for p in result.problems] == [(0, "no_examples")]


@pytest.mark.parametrize("chunk_size", [1, 7, 100, None])
def test_an_over_long_line_is_reported_and_skipped_not_buffered(chunk_size: int | None) -> None:
    long_line = json.dumps({"messages": [USER, {"role": "assistant", "content": "x" * 5000}]})
    result = validate(
        jsonl(CHAT) + long_line + "\n" + jsonl(CHAT, PROMPT_COMPLETION),
        chunk_size=chunk_size,
        max_line_bytes=1024,
    )
    assert [(p.line, p.code) for p in result.problems] == [(2, "line_too_long"), (4, "mixed_formats")]
    assert result.lines == 4


def test_chunk_boundaries_do_not_change_the_verdict() -> None:
    # Multi-byte characters and errors at every position relative to the chunk boundaries.
    data = (
        jsonl(CHAT, {"messages": [{"role": "user", "content": "¿Qué? 東京 🎉"}, ASSISTANT]}) + "oops\n"
    ).encode()
    data += b'{"messages": "\xe6\x9d"}\n' + jsonl(PROMPT_COMPLETION).encode() + json.dumps(CHAT).encode()
    expected = validate(data)
    assert [p.code for p in expected.problems] == ["invalid_json", "invalid_utf8", "mixed_formats"]
    for chunk_size in (1, 2, 3, 5, 64, 4096):
        assert validate(data, chunk_size=chunk_size) == expected, chunk_size


@pytest.mark.parametrize("shift", [0, 1, 2, 150, 151])
def test_a_chunk_of_several_mib_is_checked_as_small_chunks_are(shift: int) -> None:
    # A large chunk's lines are read in batches of about 1 MiB: a blank, a bad and a preference
    # line around the first batch's end, and a blank last line, are found where they are.
    line = json.dumps(CHAT)
    lines = [line] * ((1 << 20) // (len(line) + 1) - 2 + shift)
    lines += ["", "{oops", json.dumps(PREFERENCE)] + [line] * 20000 + [""]
    data = ("\n".join(lines) + "\n").encode()
    expected = validate(data, chunk_size=4096)
    assert [p.code for p in expected.problems] == ["invalid_json", "mixed_formats"]
    assert expected.lines == len(lines)
    assert validate(data) == expected
