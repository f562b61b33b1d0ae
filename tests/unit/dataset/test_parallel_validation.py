"""Validation spread over worker processes gives exactly the verdict of the plain validator."""

from __future__ import annotations

import json

import pytest

from services.dataset.parallel_validation import StreamValidation, ValidationPool
from services.dataset.validation import JsonlValidator, ValidationResult

CHAT = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]}


def sample_file() -> bytes:
    """Garbage before the first example, then examples with problems scattered across many blocks."""
    lines = ["not json", "[1]"]
    for index in range(400):
        if index % 97 == 5:
            lines.append('{"prompt": "a", "completion": "b"}')  # another format than the file's
        elif index % 89 == 7:
            lines.append('{"messages": [}')
        elif index % 131 == 9:
            lines.append(
                json.dumps({"messages": [{"role": "user", "content": "x" * 3000}, CHAT["messages"][1]]})
            )
        else:
            lines.append(json.dumps(CHAT))
    return ("\n".join(lines) + "\n").encode()


def chunks(data: bytes, size: int) -> list[bytes]:
    return [data[start : start + size] for start in range(0, len(data), size)]


def plain_verdict(data: bytes, **limits: int) -> ValidationResult:
    validator = JsonlValidator(**limits)
    for chunk in chunks(data, 1000):
        validator.feed(chunk)
    return validator.finish()


@pytest.mark.parametrize("processes", [0, 2])
async def test_parallel_checks_give_the_plain_validators_verdict(processes: int) -> None:
    data = sample_file()
    limits = {"max_problems": 8, "max_line_bytes": 2048}
    pool = ValidationPool(processes)
    try:
        validation = StreamValidation(pool, **limits)
        for chunk in chunks(data, 777):
            await validation.feed(chunk)
        result = await validation.finish()
    finally:
        pool.close()
    expected = plain_verdict(data, **limits)
    assert result == expected
    assert expected.problem_count > len(expected.problems) == 8
    assert {p.code for p in expected.problems} == {
        "invalid_json",
        "not_an_object",
        "mixed_formats",
        "line_too_long",
    }
