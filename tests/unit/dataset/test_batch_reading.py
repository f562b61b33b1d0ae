"""The batch reader (msgspec, plain shapes) and the line-by-line reader give the same verdict.

Upload validation takes blocks of plain examples whole (services/common/training_format/
batches.py) and reads every other line one by one; the batch reader may only accept, so a
file's result (its problems and their messages, its statistics) must be exactly the one the
line-by-line reader alone gives. Lines are generated close to the plain shapes, with the
mutations that must make the batch reader decline: other roles, keys, types and formats, empty
lists and completions, weights, CRLF and spaces, a byte order mark, duplicate keys, escaped
lone surrogates, invalid UTF-8, and arbitrary JSON.
"""

from __future__ import annotations

import json
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.common.training_format import ExampleFormat, ExampleReader
from services.common.training_format.batches import read_batch
from services.dataset.validation import JsonlValidator, ValidationResult
from tests.unit.dataset.test_validation_properties import JSON_VALUES

ROLES = st.sampled_from(["system", "developer", "user", "assistant", "tool", "function", "Assistant", None])
PLAIN_ROLES = st.sampled_from(["system", "developer", "user", "assistant"])
TEXT = st.text(max_size=8)
CONTENT = TEXT | st.text(st.characters(categories=["Cs", "So"]), max_size=3) | st.sampled_from(
    ["", None, 5, [{"type": "text", "text": "hi"}]]
)
FORMATS = st.sampled_from(["chat", "prompt_completion", "preference"])


@st.composite
def plain_messages(draw: st.DrawFn, last: str, max_size: int = 3) -> list[dict[str, Any]]:
    """Plain messages ({"role", "content"} of a plain role) ending with one of role ``last``."""
    roles = [*draw(st.lists(PLAIN_ROLES, max_size=max_size)), last]
    return [{"role": role, "content": draw(TEXT)} for role in roles]


@st.composite
def examples(draw: st.DrawFn, example_format: str) -> Any:
    """A plain valid example of the format, often changed in one way that may (or may not) spoil it."""
    example: dict[str, Any]
    if example_format == "chat":
        example = {"messages": draw(plain_messages("assistant"))}
        messages = example["messages"]
    elif example_format == "prompt_completion":
        example = {"prompt": draw(TEXT), "completion": draw(TEXT)}
        messages = []
    else:
        example = {
            "input": {"messages": draw(plain_messages("user"))},
            "preferred_output": draw(plain_messages("assistant", 0)),
            "non_preferred_output": draw(plain_messages("assistant", 0)),
        }
        messages = [*example["input"]["messages"], *example["preferred_output"]]
    changes = ["role", "last", "content", "key", "drop", "empty", "top", "any"]
    change = draw(st.sampled_from(["none"] * 6 + changes))
    message = draw(st.sampled_from(messages)) if messages else example
    if change == "role":
        message["role"] = draw(ROLES)
    elif change == "last" and example_format != "prompt_completion":
        (example.get("input") or example)["messages"][-1]["role"] = draw(ROLES)
    elif change == "content":
        key = draw(st.sampled_from(["content", "prompt", "completion"])) if not messages else "content"
        message[key] = draw(CONTENT)
    elif change == "key":
        message[draw(st.sampled_from(["weight", "name", "tool_call_id", "contents"]))] = draw(
            st.sampled_from([0, 1, 2, "x"])
        )
    elif change == "drop" and message:
        del message[draw(st.sampled_from(sorted(message)))]
    elif change == "empty":
        for value in (example, example.get("input", {})):
            for key, listed in value.items():
                if isinstance(listed, list):
                    listed.clear() if draw(st.booleans()) else listed.extend(listed)
    elif change == "top":
        key = draw(st.sampled_from(["messages", "prompt", "tools", "preferred_completion", "input"]))
        example[key] = draw(st.sampled_from([[], "x", {"messages": []}]))
    elif change == "any":
        return draw(JSON_VALUES)
    return example


@st.composite
def files(draw: st.DrawFn, max_lines: int = 12) -> list[bytes]:
    """A file's lines, each an example written out as a client might, or mangled; mostly of one format."""
    example_format = draw(FORMATS)
    lines = []
    for _ in range(draw(st.integers(1, max_lines))):
        line_format = draw(FORMATS) if draw(st.integers(0, 9)) == 0 else example_format
        example = draw(examples(line_format))
        styles = ["compact", "crlf", "spaces", "bom", "duplicate", "cut", "latin1"]
        style = draw(st.sampled_from(["plain"] * 8 + styles))
        text = json.dumps(example, separators=(",", ":") if style == "compact" else None)
        if style == "crlf":
            text += "\r"
        elif style == "spaces":
            text = f" {text} "
        elif style == "bom":
            text = "\ufeff" + text
        elif style == "duplicate" and text.startswith("{") and len(text) > 2:
            text = '{"messages": [], ' + text[1:]
        elif style == "cut":
            text = text[: draw(st.integers(0, len(text)))]
        line = text.encode("utf-8", "surrogatepass")
        lines.append(line.replace(b"e", b"\xe9") if style == "latin1" else line)
    return lines


def validate(data: bytes, batches: bool) -> ValidationResult:
    validator = JsonlValidator(max_problems=1000)
    if batches:
        validator.feed(data)
        return validator.finish()
    with mock.patch("services.dataset.validation.read_batch", return_value=False):
        validator.feed(data)
        return validator.finish()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(file_lines=files(), blank=st.integers(0, 20))
def test_batches_give_the_verdict_of_reading_line_by_line(file_lines: list[bytes], blank: int) -> None:
    if blank < len(file_lines):
        file_lines.insert(blank, b"")
    data = b"\n".join(file_lines)
    assert validate(data, batches=True) == validate(data, batches=False)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(file_lines=files(max_lines=3))
def test_a_batch_it_accepts_is_valid_line_by_line_with_the_same_counts(file_lines: list[bytes]) -> None:
    batch_reader = ExampleReader()
    if not read_batch(batch_reader, b"\n".join(file_lines)):
        return
    line_reader = ExampleReader()
    for line in file_lines:
        line_reader.read_bytes(line)  # raises for an invalid line
    counted = ("line", "anchor", "examples", "messages", "characters", "trained")
    assert [getattr(batch_reader, key) for key in counted] == [getattr(line_reader, key) for key in counted]


SYSTEM = {"role": "system", "content": "Be brief."}
USER = {"role": "user", "content": "Capital of France?"}
REPLY = {"role": "assistant", "content": "Paris 🎉"}


@pytest.mark.parametrize(
    ("example", "example_format"),
    [
        ({"messages": [SYSTEM, USER, REPLY]}, ExampleFormat.CHAT),
        ({"prompt": "Capital of France?", "completion": " Paris"}, ExampleFormat.PROMPT_COMPLETION),
        (
            {"input": {"messages": [USER]}, "preferred_output": [REPLY], "non_preferred_output": [REPLY]},
            ExampleFormat.PREFERENCE,
        ),
    ],
)
def test_plain_examples_of_each_format_are_taken_in_one_batch(
    example: dict[str, Any], example_format: ExampleFormat
) -> None:
    block = "\n".join([json.dumps(example)] * 3 + [json.dumps(example, ensure_ascii=False) + "\r"]).encode()
    reader = ExampleReader()
    assert read_batch(reader, block)
    assert reader.anchor is not None and reader.anchor.format is example_format and reader.line == 4
    assert validate(block, batches=True) == validate(block, batches=False)


def test_a_batch_of_another_format_than_the_files_is_left_to_the_line_reader() -> None:
    reader = ExampleReader()
    reader.read(json.dumps({"prompt": "a", "completion": "b"}))
    assert not read_batch(reader, json.dumps({"messages": [USER, REPLY]}).encode())
    assert reader.line == 1 and reader.examples == 1
