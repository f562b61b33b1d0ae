"""OpenAI's eval templates: `{{ item.question }}` and `{{ sample.output_text }}` filled from one item.

A run's input messages and every grader's `input` / `reference` are templates. OpenAI's
graders guide names two namespaces, `item` (a row of the run's data) and `sample` (what the
model answered), with JSON-path-like dotted access; this module is the one place that
grammar lives, so the trainer's checks at creation and its rendering per item agree.

The rules (docs/evals.md says the same for users):

- A reference is `{{ path }}`; whitespace inside the braces is allowed. `path` is
  `namespace.key.key...`; a key that is all digits indexes a list (`item.choices.0`).
- Empty braces (`{{}}`, `{{ }}`) are not a reference and stay as they are, as does all text
  outside braces. Anything else inside double braces must be a valid reference: a typo is an
  error, not silently literal text.
- Strings render as they are; anything else (numbers, booleans, null, objects, lists) renders
  as compact JSON without ASCII escaping, so `{{ item.n }}` of 3 is `3` and of true is `true`.
- A missing key, an index past a list's end, or a namespace other than `item` / `sample` is a
  :class:`TemplateError` naming the path.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

NAMESPACES = ("item", "sample")
# What the `sample` namespace holds: the answer's text, and its JSON when the text parses.
SAMPLE_KEYS = ("output_text", "output_json")

# `{{`, anything without braces, `}}`; the content decides whether it is a reference.
_BRACES = re.compile(r"\{\{([^{}]*)\}\}")
_KEY = re.compile(r"^[^\s.{}]+$")


class TemplateError(ValueError):
    """A template refers to something the item or sample does not have; the message names the path."""

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message)
        self.path = path


def references(template: str) -> list[str]:
    """The paths a template refers to, in order of appearance, e.g. `["item.question", "sample.output_text"]`.

    A malformed reference (`{{ item..a }}`, `{{ a b }}`) is a :class:`TemplateError`, so a
    check at creation catches what rendering would refuse later.
    """
    paths = []
    for match in _BRACES.finditer(template):
        path = match.group(1).strip()
        if path:
            _keys(path)
            paths.append(path)
    return paths


def render(template: str, item: Mapping[str, Any], sample: Mapping[str, Any] | None = None) -> str:
    """The template with each reference replaced by its value from `item` or `sample`.

    `sample` is None where there is no answer yet (a run's input messages): a `sample.`
    reference there is a :class:`TemplateError`.
    """
    namespaces: dict[str, Any] = {"item": item}
    if sample is not None:
        namespaces["sample"] = sample

    def substitute(match: re.Match[str]) -> str:
        path = match.group(1).strip()
        if not path:
            return match.group(0)
        return _as_text(_lookup(path, namespaces))

    return _BRACES.sub(substitute, template)


def sample_namespace(output_text: str) -> dict[str, Any]:
    """The `sample` namespace for a model's answer: `output_text`, plus `output_json` when the text is JSON.

    OpenAI fills `output_json` only for structured outputs; Tailor parses every answer, so a
    grader may compare `{{ sample.output_json.label }}` whenever the model answered in JSON.
    """
    sample: dict[str, Any] = {"output_text": output_text}
    try:
        sample["output_json"] = json.loads(output_text)
    except ValueError:
        pass
    return sample


def _keys(path: str) -> list[str]:
    """The dotted keys of a reference, checked for shape (a namespace and at least one key)."""
    keys = path.split(".")
    if not all(_KEY.match(key) for key in keys):
        raise TemplateError(
            f"{{{{ {path} }}}} is not a reference: write namespace.key.key, e.g. {{{{ item.answer }}}}",
            path=path,
        )
    if keys[0] not in NAMESPACES:
        raise TemplateError(
            f"{path}: unknown namespace {keys[0]!r}; references start with item. or sample.", path=path
        )
    if len(keys) == 1:
        raise TemplateError(f"{path}: name a field, e.g. {path}.answer", path=path)
    return keys


def _lookup(path: str, namespaces: Mapping[str, Any]) -> Any:
    keys = _keys(path)
    if keys[0] not in namespaces:
        raise TemplateError(f"{path}: there is no sample here, only item. fields", path=path)
    value = namespaces[keys[0]]
    for depth, key in enumerate(keys[1:], start=2):
        found, value = _child(value, key)
        if not found:
            where = ".".join(keys[:depth])
            raise TemplateError(f"{path}: the {keys[0]} has no value at {where}", path=path)
    return value


def _child(value: Any, key: str) -> tuple[bool, Any]:
    if isinstance(value, Mapping):
        return (True, value[key]) if key in value else (False, None)
    if isinstance(value, Sequence) and not isinstance(value, str) and key.isdigit():
        index = int(key)
        return (True, value[index]) if index < len(value) else (False, None)
    return False, None


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
