"""The training file format's own rules: what a line becomes, and the decisions that differ from
what either reader did before they shared this module (see services/common/training_format)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.training_format import (
    ChatExample,
    ExampleFormat,
    ExampleReader,
    InvalidExample,
    PreferenceExample,
    PromptCompletionExample,
)

USER = {"role": "user", "content": "Weather in Lisbon?"}
REPLY = {"role": "assistant", "content": "It is 21 degrees."}
PREFERENCE = {
    "input": {"messages": [USER]},
    "preferred_output": [REPLY],
    "non_preferred_output": [{"role": "assistant", "content": "Cold."}],
}


def read(line: str | dict[str, Any], *, line_number: int = 1) -> Any:
    reader = ExampleReader(first_line=line_number)
    return reader.read_example(line if isinstance(line, str) else json.dumps(line))


def problem(line: str | dict[str, Any]) -> InvalidExample:
    with pytest.raises(InvalidExample) as caught:
        read(line)
    return caught.value


def test_each_format_becomes_its_typed_example() -> None:
    chat = read({"messages": [USER, REPLY], "tools": []})
    assert chat == ChatExample([USER, REPLY], None)
    assert read({"prompt": "2 + 2 =", "completion": " 4"}) == PromptCompletionExample("2 + 2 =", " 4")
    spec_names = {
        "input": {"messages": [USER]},
        "preferred_completion": [REPLY],
        "non_preferred_completion": PREFERENCE["non_preferred_output"],
    }
    assert read(spec_names) == PreferenceExample([USER], None, REPLY, PREFERENCE["non_preferred_output"][0])


def test_a_preference_example_pairs_the_input_with_each_reply() -> None:
    example = read(PREFERENCE)
    assert isinstance(example, PreferenceExample)
    assert example.conversations() == ([USER, REPLY], [USER, PREFERENCE["non_preferred_output"][0]])


def test_deprecated_function_calling_becomes_tool_calling() -> None:
    call = {"name": "get_weather", "arguments": '{"city": "Lisbon"}'}
    example = read(
        {
            "messages": [
                USER,
                {"role": "assistant", "function_call": call},
                {"role": "function", "name": "get_weather", "content": "21"},
                REPLY,
            ],
            "functions": [{"name": "get_weather", "parameters": {"type": "object"}}],
        }
    )
    assert isinstance(example, ChatExample)
    assert example.messages == [
        USER,
        {"role": "assistant", "tool_calls": [{"id": "call_0", "type": "function", "function": call}]},
        {"role": "tool", "tool_call_id": "call_0", "name": "get_weather", "content": "21"},
        REPLY,
    ]
    assert example.tools == [
        {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    ]
    assert example.assistant_weights == [1, 1]


def test_a_preference_output_is_exactly_one_assistant_message() -> None:
    # OpenAI trains on one-turn preferences (its spec: maxItems 1); the worker always required one.
    two = problem({**PREFERENCE, "preferred_output": [REPLY, REPLY]})
    assert two.code == "invalid_output"
    assert two.message == "preferred_output must be a list of exactly one assistant message, got a list of 2"


def _reply(**fields: Any) -> dict[str, Any]:
    return {"messages": [USER, {"role": "assistant", **fields}]}


CALL = {"name": "f", "arguments": "{}"}


def _offering(**tools: Any) -> dict[str, Any]:
    return {"messages": [USER, REPLY], **tools}


# Tool checks format a problem's path only once something is wrong: each branch, worded as before.
TOOL_PROBLEMS = [
    (
        _reply(tool_calls=[{"id": "c", "type": "function", "function": CALL, "x": 1}]),
        "unrecognized_key",
        'messages[1].tool_calls[0]: unknown key "x"; expected only function, id, type',
    ),
    (
        _reply(tool_calls=[{"id": "c", "type": "function", "function": {"name": "", "arguments": "{}"}}]),
        "invalid_tool_calls",
        "messages[1].tool_calls[0].function.name must be a non-empty string",
    ),
    (
        _reply(function_call=3),
        "invalid_tool_calls",
        "messages[1].function_call must be an object with name and arguments, got a number",
    ),
    (
        _reply(function_call={"name": "f"}),
        "invalid_tool_calls",
        "messages[1].function_call.arguments must be a string (the arguments' JSON text)",
    ),
    (
        _offering(tools=[{"type": "function", "function": {"name": "f"}, "extra": 1}]),
        "unrecognized_key",
        'tools[0]: unknown key "extra"; expected only function, type',
    ),
    (
        _offering(tools=[{"type": "function", "function": {"name": "f", "parameters": []}}]),
        "invalid_tools",
        "tools[0].function.parameters must be a JSON Schema object",
    ),
    (
        _offering(functions=[{"name": "f", "description": 1}]),
        "invalid_tools",
        "functions[0].description must be a string",
    ),
    (
        _offering(functions=[{"name": "f", "strict": "yes"}]),
        "invalid_tools",
        "functions[0].strict must be true or false",
    ),
]


@pytest.mark.parametrize(("line", "code", "message"), TOOL_PROBLEMS)
def test_each_tool_problem_names_its_path(line: dict[str, Any], code: str, message: str) -> None:
    found = problem(line)
    assert (found.code, found.message) == (code, message)


@pytest.mark.parametrize(
    ("escaped", "valid"),
    [
        ("\\ud83c\\udf89", True),  # a pair: 🎉
        ("\\uD83C\\uDF89", True),
        ("\\\\ud800", True),  # an escaped backslash, then the letters ud800
        ("\\\\\\ud83c\\udf89", True),
        ("\\ud800", False),
        ("\\udc00", False),
        ("x\\ud83cx\\udf89", False),
        ("\\ud83c\\\\\\udf89", False),
        ("\\udf89\\ud83c", False),
    ],
)
def test_half_a_surrogate_pair_is_refused(escaped: str, valid: bool) -> None:
    reply = '{"role": "assistant", "content": "x"}'
    line = '{"messages": [{"role": "user", "content": "' + escaped + '"}, ' + reply + "]}"
    if valid:
        assert read(line) is not None
    else:
        assert problem(line).code == "invalid_unicode"


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(codec=None) | st.characters(categories=["Cs"]), max_size=8))
def test_a_string_is_refused_exactly_when_it_is_not_unicode_text(content: str) -> None:
    line = json.dumps({"prompt": content, "completion": "x"})  # ASCII: every non-ASCII character escaped
    try:
        content.encode("utf-8")
    except UnicodeEncodeError:
        assert problem(line).code == "invalid_unicode"
    else:
        assert read(line) == PromptCompletionExample(content, "x")


def test_a_byte_order_mark_is_dropped_on_the_first_line_only() -> None:
    line = "\ufeff" + json.dumps({"prompt": "a", "completion": "b"})
    assert read(line) == PromptCompletionExample("a", "b")
    with pytest.raises(InvalidExample, match="invalid JSON"):
        read(line, line_number=2)


def test_the_first_example_sets_the_format_and_may_be_refused_first() -> None:
    seen: list[ExampleFormat] = []
    reader = ExampleReader(on_first_example=seen.append)
    assert reader.read("") is None
    reader.read(json.dumps({"prompt": "a", "completion": "b"}))
    assert seen == [ExampleFormat.PROMPT_COMPLETION] and reader.anchor is not None and reader.anchor.line == 2
    with pytest.raises(InvalidExample, match="but line 2 is a prompt/completion example"):
        reader.read(json.dumps({"messages": [USER, REPLY]}))
    assert reader.line == 3 and reader.examples == 1


def test_the_format_needs_neither_torch_nor_transformers() -> None:
    # The dataset service's image has neither; it reads files through this package.
    code = (
        "import sys, services.common.training_format, services.dataset.validation, "
        "services.dataset.parallel_validation, services.dataset.statistics; "
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
