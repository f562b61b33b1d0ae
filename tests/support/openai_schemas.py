"""Checks a response body against OpenAI's published schema for it, as a test assertion.

The schemas are the trimmed, pinned copy of OpenAI's OpenAPI document in
``tests/support/openai_spec/schemas.json`` (its ``source`` says which commit). A body is
named by OpenAI's ``operationId`` (``"listFiles"``: that operation's 200 answer; with
``stream=True`` the ``text/event-stream`` one, i.e. one chunk) or by a component schema
name (``"ErrorResponse"``, ``"CreateChatCompletionStreamResponse"``).

The document is OpenAPI 3.1, whose schemas are JSON Schema 2020-12, but it still carries
3.0 spellings that a JSON Schema validator would silently ignore or reject, so they are
translated on loading:

- ``nullable: true`` next to a schema (even a ``$ref``) becomes ``anyOf: [schema, null]``
  (a validator ignores the keyword, and null would fail every such field);
- the boolean ``exclusiveMinimum``/``exclusiveMaximum`` beside ``minimum``/``maximum``
  become the numeric bound.

Where the document contradicts itself, :data:`AMENDMENTS` says so and what is checked
instead; that list is the whole of what Tailor is allowed beyond the published schemas.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, relevance

SPEC = Path(__file__).parent / "openai_spec" / "schemas.json"
_JSON = "application/json"
_STREAM = "text/event-stream"
_SCHEMA_MAPS = {"properties", "patternProperties", "$defs", "dependentSchemas"}
_VALUES = {"enum", "const", "default", "required"}



@dataclass(frozen=True)
class Amendment:
    """A change to a published schema at ``pointer``; with ``derived``, made to a copy of that name."""

    schema: str
    pointer: str
    change: Callable[[Any], Any]
    why: str
    derived: str | None = None


AMENDMENTS = (
    Amendment(
        "OpenAIFile",
        "/properties/purpose",
        lambda purpose: {**purpose, "enum": [*purpose["enum"], "evals"]},
        "createFile takes purpose 'evals' (CreateFileRequest), which the file object's enum lacks",
    ),
    Amendment(
        "FineTuningJob",
        "/properties/status",
        lambda status: {**status, "enum": [*status["enum"], "paused"]},
        "pauseFineTuningJob answers a FineTuningJob, whose status enum lacks the state it pauses into",
    ),
    Amendment(
        "CreateCompletionResponse",
        "/properties/choices/items/properties/finish_reason",
        lambda reason: {"anyOf": [reason, {"type": "null"}]},
        "the document gives createCompletion's chunks the whole answer's shape, where finish_reason "
        "is required, but a choice has none before its last chunk (OpenAI sends null there)",
        derived="CreateCompletionResponse (chunk)",
    ),
    Amendment(
        "CreateCompletionResponse (chunk)",
        "/properties/usage",
        lambda usage: {"anyOf": [usage, {"type": "null"}]},
        "with stream_options.include_usage, 'all other chunks will also include a usage field, but with "
        "a null value' (ChatCompletionStreamOptions, which createCompletion's request takes)",
    ),
    Amendment(
        "EvalRun",
        "/properties/error",
        lambda error: {"anyOf": [error, {"type": "null"}]},
        "a run that did not fail has error null in every example OpenAI publishes (and in its answers), "
        "where the schema requires an EvalApiError",
    ),
    Amendment(
        "EvalRunOutputItem",
        "/properties/sample/properties/error",
        lambda error: {"anyOf": [error, {"type": "null"}]},
        "a sample that did not fail has error null in OpenAI's published examples, where the schema "
        "requires an EvalApiError",
    ),
)
# Operations whose chunks the document publishes no schema for: the schema checked instead.
CHUNKS = {"createCompletion": "CreateCompletionResponse (chunk)"}


def _json_schema(schema: Any) -> Any:
    """``schema`` with the OpenAPI 3.0 spellings translated (see the module docstring)."""
    if isinstance(schema, list):
        return [_json_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    translated: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            translated[key] = {name: _json_schema(sub) for name, sub in value.items()}
        elif key in _VALUES:
            translated[key] = value
        else:
            translated[key] = _json_schema(value)
    for exclusive, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(translated.get(exclusive), bool):
            if translated.pop(exclusive) and bound in translated:
                translated[exclusive] = translated.pop(bound)
    if "nullable" in translated:
        if not translated.pop("nullable"):
            return translated
        return {"anyOf": [translated, {"type": "null"}]}
    return translated


@functools.cache
def _spec() -> dict[str, Any]:
    return json.loads(SPEC.read_text())


def source() -> dict[str, str]:
    """Where the schemas come from: repository, commit, path, versions."""
    return dict(_spec()["source"])


@functools.cache
def _components() -> dict[str, Any]:
    schemas = {name: _json_schema(s) for name, s in _spec()["components"]["schemas"].items()}
    for amendment in AMENDMENTS:
        amended = schemas[amendment.schema]
        if amendment.derived is not None:
            amended = schemas[amendment.derived] = copy.deepcopy(amended)
        *path, last = amendment.pointer.strip("/").split("/")
        for part in path:
            amended = amended[part]
        amended[last] = amendment.change(amended[last])
    return {"schemas": schemas}


@functools.cache
def _validator(name: str, stream: bool) -> Draft202012Validator:
    spec = _spec()
    if stream and name in CHUNKS:
        target = {"$ref": f"#/components/schemas/{CHUNKS[name]}"}
    elif name in spec["operations"]:
        answers = spec["operations"][name]["responses"]["200"]
        target = answers[_STREAM] if stream else answers[_JSON]
    elif name in _components()["schemas"]:
        target = {"$ref": f"#/components/schemas/{name}"}
    else:
        raise KeyError(f"{name!r} is neither an operation nor a schema in {SPEC.name}")
    schema = {**_json_schema(target), "components": _components()}
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def _describe(error: ValidationError) -> str:
    value = json.dumps(error.instance, ensure_ascii=False)
    value = value if len(value) <= 200 else value[:200] + "…"
    expected = "/".join(str(part) for part in error.schema_path)
    return f"at {error.json_path}: {error.message} (value {value}; schema {expected})"


def violations(name: str, body: Any, *, stream: bool = False) -> list[str]:
    """What in ``body`` breaks ``name``'s schema, most relevant first; empty when it matches."""
    errors = sorted(_validator(name, stream).iter_errors(body), key=relevance)
    described = []
    for error in errors:
        # for anyOf/oneOf, the branch that came closest says more than "is not valid under any"
        deepest = min(error.context, key=relevance) if error.context else error
        described.append(_describe(deepest) + ("" if deepest is error else f" [{_describe(error)}]"))
    return described


def assert_matches(name: str, body: Any, *, stream: bool = False) -> None:
    """Fails naming each path in ``body`` that breaks OpenAI's schema for ``name``, and what was expected."""
    found = violations(name, body, stream=stream)
    if found:
        pinned = source()
        listing = "\n  ".join(found)
        raise AssertionError(
            f"{len(found)} violation(s) of OpenAI's {name}{' chunk' if stream else ''} schema "
            f"({pinned['repository']}@{pinned['commit'][:12]}):\n  {listing}\n"
            f"body: {json.dumps(body, ensure_ascii=False)[:2000]}"
        )
