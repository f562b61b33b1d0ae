"""Properties of the validator on arbitrary input: it never crashes, every problem names a
line of the file, at most ``max_problems`` are kept, and chunking never changes the verdict."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.dataset.validation import JsonlValidator, ValidationResult

MAX_PROBLEMS = 5
MAX_LINE_BYTES = 2048


def validate(data: bytes, cuts: list[int]) -> ValidationResult:
    """Feed ``data`` cut at the positions ``cuts`` (any order, duplicates and out-of-range ignored)."""
    validator = JsonlValidator(max_problems=MAX_PROBLEMS, max_line_bytes=MAX_LINE_BYTES)
    start = 0
    for cut in sorted({c for c in cuts if 0 < c < len(data)}):
        validator.feed(data[start:cut])
        start = cut
    validator.feed(data[start:])
    return validator.finish()


def line_count(data: bytes) -> int:
    """Lines as an editor counts them: a final newline does not start another line."""
    return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)


def assert_well_formed(result: ValidationResult, data: bytes) -> None:
    lines = line_count(data)
    assert result.lines == lines
    assert len(result.problems) == min(result.problem_count, MAX_PROBLEMS)
    numbers = [problem.line for problem in result.problems]
    assert numbers == sorted(set(numbers)), "one problem per line, in line order"
    for problem in result.problems:
        # Line 0 (the whole file) only when there is nothing else to say: no example at all.
        assert 1 <= problem.line <= lines or (problem.code == "no_examples" and result.problem_count == 1)
        assert problem.code and problem.message
        problem.message.encode("utf-8")  # it goes into protobuf strings and the database
    assert result.valid == (result.problem_count == 0) == (result.statistics is not None)


# Bytes biased towards what trips line splitting and JSON parsing: brackets, quotes,
# newlines, invalid and truncated UTF-8, byte order marks.
JSONISH_BYTES = st.lists(
    st.sampled_from(
        [
            b"{",
            b"}",
            b"[",
            b'"',
            b":",
            b" ",
            b"\n",
            b"\r",
            b"\xff",
            b"\xe2\x82",
            "\ufeff".encode(),
            b'"messages"',
        ]
    ),
    max_size=200,
).map(b"".join)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=3000) | JSONISH_BYTES, cuts=st.lists(st.integers(0, 3000), max_size=8))
def test_random_bytes_never_crash_it_and_every_problem_names_a_line(data: bytes, cuts: list[int]) -> None:
    result = validate(data, cuts)
    assert_well_formed(result, data)
    assert result == validate(data, []), "the verdict must not depend on chunk boundaries"


# JSON values shaped like fine-tuning examples, so the checks below the top level are reached.
KEYS = st.sampled_from(
    ["messages", "role", "content", "weight", "name", "tool_calls", "tool_call_id", "function", "arguments",
     "id", "type", "text", "tools", "parallel_tool_calls", "functions", "function_call", "prompt", "completion",
     "input", "preferred_output", "non_preferred_output", "preferred_completion", "non_preferred_completion",
     "parameters", "description", "strict"]
)  # fmt: skip
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-3, 3)
    | st.floats(allow_nan=True)
    | st.sampled_from(["system", "developer", "user", "assistant", "tool", "function", "text", "image_url"])
    | st.text(max_size=10)
)
JSON_VALUES: st.SearchStrategy[Any] = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(KEYS | st.text(max_size=5), inner, max_size=5)
    ),
    max_leaves=30,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    examples=st.lists(JSON_VALUES, max_size=12),
    blank_lines=st.lists(st.integers(0, 12), max_size=3),
    cuts=st.lists(st.integers(0, 4000), max_size=6),
)
def test_arbitrary_json_lines_never_crash_it_and_every_problem_names_a_line(
    examples: list[Any], blank_lines: list[int], cuts: list[int]
) -> None:
    lines = [json.dumps(example) for example in examples]
    for position in blank_lines:
        lines.insert(min(position, len(lines)), "")
    data = "\n".join(lines).encode()
    result = validate(data, cuts)
    assert_well_formed(result, data)
    assert result == validate(data, [])
