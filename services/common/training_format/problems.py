"""How a line fails the format: a :class:`Problem` with a stable code, raised as :class:`InvalidExample`.

Problems quote the user's data, briefly (:func:`shorten`), and name where in the example the
first thing wrong is, as a path such as ``messages[2].tool_calls[0].function.name``. Paths are
only formatted once something is wrong: the checks run for every line of every upload.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, NoReturn


@dataclass(frozen=True)
class Problem:
    """One reason a file is invalid: its 1-based line (0: the whole file), a stable code, and why."""

    line: int
    code: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}" if self.line else self.message


# The one problem of the file as a whole: nothing in it to train on.
NO_EXAMPLES = Problem(0, "no_examples", "the file holds no examples")


class InvalidExample(Exception):
    """The first problem found on a line (the reader knows which line: it is the one just read)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def at(self, line: int) -> Problem:
        """This problem on ``line``."""
        return Problem(line, self.code, self.message)


def fail(code: str, message: str) -> NoReturn:
    raise InvalidExample(code, message)


def check_keys(value: dict[str, Any], allowed: frozenset[str], where: str) -> None:
    """Refuse keys the format does not define: a typo such as ``wieght`` must not pass unnoticed."""
    if not allowed.issuperset(value):
        fail_unknown_key(value, allowed, where)


def fail_unknown_key(value: dict[str, Any], allowed: frozenset[str], where: str) -> NoReturn:
    unknown = next(key for key in value if key not in allowed)
    known = ", ".join(sorted(allowed))
    fail("unrecognized_key", f"{where}: unknown key {shorten(unknown)}; expected only {known}")


def describe_role(message: dict[str, Any]) -> str:
    role = message.get("role")
    return f"role {shorten(role)}" if role is not None else "a message without role"


_JSON_TYPES = {
    dict: "an object",
    list: "a list",
    str: "a string",
    bool: "a boolean",
    int: "a number",
    float: "a number",
}


def json_type(value: Any) -> str:
    """What kind of JSON value ``value`` is, as a problem says it (``an empty list``, ``null``)."""
    if value is None:
        return "null"
    if value == []:
        return "an empty list"
    return _JSON_TYPES.get(type(value), type(value).__name__)


def shorten(value: Any, limit: int = 60) -> str:
    """``value`` as JSON text, cut to ``limit`` characters: problems quote user data, briefly."""
    try:
        shown = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        shown = repr(value)
    if len(shown) > limit:
        shown = shown[: limit - 3] + "..."
    # JSON escapes can smuggle lone surrogates into strings; they have no UTF-8 encoding.
    return shown.encode("utf-8", "backslashreplace").decode("utf-8")
