"""A run's items: read from their source rows and checked before anything is stored.

Each row is one ``{"item": {...}, "sample": {...}?}`` object: a line of a JSONL file
(purpose ``evals``) or an element of the request's inline content. Every item must match
the eval's item schema, and every ``item.`` reference of the run's input templates and of
the eval's criteria must resolve in it, so that a run never starts on items it cannot
render. Errors name the row the way the user can find it (``line 3`` of the file, or
``content[2]``) and quote jsonschema's or the template's complaint, cut short.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from services.common.errors import InvalidArgument, shown
from services.trainer.evals.templates import TemplateError, references, render
from tailor.trainer.v1 import eval_service_pb2 as eval_pb2

# The chat roles a run's messages may have.
MESSAGE_ROLES = ("system", "developer", "user", "assistant")
ITEM_PREFIX = "item."
FILE_PARAM = "data_source.source"
CONTENT_PARAM = "data_source.source.content"


@dataclass(frozen=True)
class RowPlace:
    """Where a row came from, for errors: ``data_source.source: line 3`` or ``...content[2]``."""

    param: str
    where: str

    def error(self, problem: str) -> InvalidArgument:
        return InvalidArgument(f"{self.where}: {problem}", param=self.param)


@dataclass(frozen=True)
class SourceRow:
    """One row of a run's source: its item and, when given, its sample."""

    index: int
    item: dict[str, Any]
    sample: dict[str, Any] | None
    place: RowPlace


def file_line(line_number: int) -> RowPlace:
    return RowPlace(FILE_PARAM, f"{FILE_PARAM}: line {line_number}")


def content_element(index: int) -> RowPlace:
    return RowPlace(CONTENT_PARAM, f"{CONTENT_PARAM}[{index}]")


def parse_row(text: str, index: int, place: RowPlace) -> SourceRow:
    """A row's item and sample, or INVALID_ARGUMENT naming the row."""
    try:
        row = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise place.error(f"not valid JSON ({error.msg}).") from error
    if not isinstance(row, dict):
        raise place.error('each row must be a JSON object like {"item": {...}}.')
    item = row.get("item")
    if not isinstance(item, dict):
        raise place.error('each row must have an "item" object.')
    sample = row.get("sample")
    if sample is not None and not isinstance(sample, dict):
        raise place.error('"sample", when given, must be an object.')
    return SourceRow(index, item, sample, place)


def file_rows(lines: Iterable[bytes], max_items: int) -> list[SourceRow]:
    """The rows of a JSONL file's lines (blank lines skipped), at most ``max_items``."""
    rows: list[SourceRow] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if len(rows) == max_items:
            raise too_many_items(FILE_PARAM, max_items)
        try:
            text = line.decode()
        except UnicodeDecodeError as error:
            raise file_line(number).error("not valid UTF-8.") from error
        rows.append(parse_row(text, len(rows), file_line(number)))
    if not rows:
        raise InvalidArgument(f"{FILE_PARAM}: the file holds no items.", param=FILE_PARAM)
    return rows


def inline_rows(rows_json: Sequence[str], max_items: int) -> list[SourceRow]:
    """The rows given inline, at most ``max_items``."""
    if not rows_json:
        raise InvalidArgument(f"{CONTENT_PARAM} must hold at least one item.", param=CONTENT_PARAM)
    if len(rows_json) > max_items:
        raise too_many_items(CONTENT_PARAM, max_items)
    return [parse_row(text, index, content_element(index)) for index, text in enumerate(rows_json)]


def too_many_items(param: str, max_items: int) -> InvalidArgument:
    return InvalidArgument(f"{param}: a run may have at most {max_items} items.", param=param)


def criterion_templates(criterion: eval_pb2.TestingCriterion) -> list[str]:
    """The templates of a criterion's grader (every grader type has an input and a reference)."""
    kind = criterion.WhichOneof("grader")
    if kind is None:
        return []
    grader = getattr(criterion, kind)
    return [grader.input, grader.reference]


def item_references(templates: Iterable[str]) -> list[str]:
    """The distinct ``item.`` references of the templates, in order of appearance."""
    found: dict[str, None] = {}
    for template in templates:
        for reference in references(template):
            if reference.startswith(ITEM_PREFIX):
                found[reference] = None
    return list(found)


def referenced_messages(item: Mapping[str, Any], item_reference: str) -> list[dict[str, str]]:
    """The chat messages an item holds at ``item_reference``; ValueError saying what is wrong."""
    try:
        text = render("{{" + item_reference + "}}", item)
    except TemplateError as error:
        raise ValueError(str(error)) from error
    try:
        messages = json.loads(text)  # rendered as compact JSON when not a string
    except ValueError:
        messages = None
    if not isinstance(messages, list) or not messages:
        raise ValueError(f"{item_reference} must be a non-empty list of messages.")
    checked = []
    for position, message in enumerate(messages):
        if not (
            isinstance(message, Mapping)
            and message.get("role") in MESSAGE_ROLES
            and isinstance(message.get("content"), str)
        ):
            raise ValueError(
                f"{item_reference}[{position}] must be a message with a role ({', '.join(MESSAGE_ROLES)}) "
                "and a string content."
            )
        checked.append({"role": message["role"], "content": message["content"]})
    return checked


def rendered_messages(
    templates: Sequence[Mapping[str, str]], item: Mapping[str, Any]
) -> list[dict[str, str]]:
    """The run's input templates rendered with one item; TemplateError when a reference is missing."""
    return [{"role": t["role"], "content": render(t["content"], item)} for t in templates]


def check_rows(
    rows: Sequence[SourceRow],
    schema: Mapping[str, Any],
    templates: Sequence[str],
    item_reference: str,
) -> None:
    """Every item matches ``schema`` and resolves every ``item.`` reference; else an error naming its row."""
    validator = Draft202012Validator(schema)
    wanted = item_references(templates)
    for row in rows:
        place = row.place
        problem = best_match(validator.iter_errors(row.item))
        if problem is not None:
            path = problem.json_path.replace("$", "item", 1)
            raise place.error(
                f"the item does not match the eval's item_schema at {path}: {shown(problem.message)}"
            )
        for reference in wanted:
            try:
                render("{{" + reference + "}}", row.item)
            except TemplateError as error:
                raise place.error(shown(str(error))) from error
        if item_reference:
            try:
                referenced_messages(row.item, item_reference)
            except ValueError as error:
                raise place.error(shown(str(error))) from error
