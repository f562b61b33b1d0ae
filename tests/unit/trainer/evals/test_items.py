"""A run's source rows: parsed, limited and checked against the item schema and the templates."""

from __future__ import annotations

import json

import pytest

from services.common.errors import InvalidArgument
from services.trainer.evals.items import (
    check_rows,
    file_rows,
    inline_rows,
    referenced_messages,
    rendered_messages,
)

SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}


def lines(*rows: object) -> list[bytes]:
    return [json.dumps(row).encode() for row in rows]


def test_file_rows_skip_blank_lines_and_keep_samples() -> None:
    content = [*lines({"item": {"n": 1}}), b"", b"  ", *lines({"item": {"n": 2}, "sample": {"x": 1}})]
    rows = file_rows(content, 10)
    assert [(r.index, r.item, r.sample) for r in rows] == [(0, {"n": 1}, None), (1, {"n": 2}, {"x": 1})]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ([b'{"item": {"n": 1}}', b"{broken"], "data_source.source: line 2: not valid JSON"),
        ([b'{"item": {"n": 1}}', b"[]"], "data_source.source: line 2: each row must be a JSON object"),
        ([b'{"n": 1}'], 'data_source.source: line 1: each row must have an "item" object'),
        ([b'{"item": {}, "sample": 3}'], 'data_source.source: line 1: "sample", when given, must be an object'),
        ([b"\xff"], "data_source.source: line 1: not valid UTF-8"),
        ([b"", b""], "data_source.source: the file holds no items"),
    ],
)
def test_a_bad_file_row_is_named_by_its_line(content: list[bytes], message: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        file_rows(content, 10)
    assert raised.value.message.startswith(message) and raised.value.param == "data_source.source"


def test_the_item_limit_counts_rows_not_blank_lines() -> None:
    assert len(file_rows([*lines({"item": {}}, {"item": {}}), b""], 2)) == 2
    with pytest.raises(InvalidArgument, match="at most 2 items"):
        file_rows(lines({"item": {}}, {"item": {}}, {"item": {}}), 2)
    with pytest.raises(InvalidArgument, match="at most 1 items") as raised:
        inline_rows(['{"item": {}}', '{"item": {}}'], 1)
    assert raised.value.param == "data_source.source.content"


def test_items_must_match_the_schema_with_a_short_message() -> None:
    rows = inline_rows([json.dumps({"item": {"n": 1}}), json.dumps({"item": {"n": "x" * 500}})], 10)
    with pytest.raises(InvalidArgument) as raised:
        check_rows(rows, SCHEMA, [], "")
    message = raised.value.message
    assert message.startswith(
        "data_source.source.content[1]: the item does not match the eval's item_schema at item.n"
    )
    assert len(message) < 300


def test_every_item_reference_of_the_templates_must_resolve() -> None:
    rows = inline_rows([json.dumps({"item": {"n": 1, "q": "a"}}), json.dumps({"item": {"n": 2}})], 10)
    check_rows(rows[:1], SCHEMA, ["{{ item.q }} and {{ sample.output_text }}"], "")
    with pytest.raises(InvalidArgument) as raised:
        check_rows(rows, SCHEMA, ["{{ item.q }} and {{ sample.output_text }}"], "")
    assert raised.value.message.startswith("data_source.source.content[1]: item.q")


def test_referenced_messages_are_checked_chat_messages() -> None:
    item = {
        "chat": [{"role": "user", "content": "hi", "name": "ignored"}],
        "bad": [{"role": "robot", "content": "x"}],
    }
    assert referenced_messages(item, "item.chat") == [{"role": "user", "content": "hi"}]
    with pytest.raises(ValueError, match=r"item.bad\[0\] must be a message"):
        referenced_messages(item, "item.bad")
    with pytest.raises(ValueError, match="item.missing"):
        referenced_messages(item, "item.missing")
    with pytest.raises(ValueError, match="non-empty list"):
        referenced_messages({"chat": []}, "item.chat")


def test_templates_render_per_item() -> None:
    templates = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "n is {{ item.n }}"}]
    assert rendered_messages(templates, {"n": 3}) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "n is 3"},
    ]
