"""Reading a file's lines in order: text, JSON, one format per file, then the example's own checks.

:class:`ExampleReader` is the one reader of training files. The dataset service runs it over
every block of an upload (in parallel, each block with the format the file's first example
set), the worker over a downloaded file, the token counter over a stored one. It keeps the
line number, so a problem it raises is on :attr:`ExampleReader.line`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from services.common.training_format.examples import ExampleFormat, TrainingExample, build_example
from services.common.training_format.problems import fail, json_type, shorten
from services.common.training_format.rules import (
    ExampleCounts,
    check_chat,
    check_preference,
    check_prompt_completion,
    detect_format,
)

BYTE_ORDER_MARK = "\ufeff"


@dataclass(frozen=True)
class FormatAnchor:
    """A file's example format, and the line of the first example, which set it."""

    format: ExampleFormat
    line: int


class ExampleReader:
    """Reads lines of one file in order (from ``first_line``): :meth:`read` each, in order.

    ``anchor`` is the file's format when an earlier part of the file set it; otherwise the
    first example sets it (:attr:`learnt_anchor`), after ``on_first_example`` (if given) has
    had the chance to refuse that format by raising. The counters add up the valid examples.

    A caller that knows its next lines escape no surrogate (:func:`may_escape_surrogates` of
    their text is false) may say so in :attr:`may_escape_surrogates`, sparing each line the search.
    """

    def __init__(
        self,
        anchor: FormatAnchor | None = None,
        *,
        first_line: int = 1,
        on_first_example: Callable[[ExampleFormat], None] | None = None,
    ) -> None:
        self.anchor = anchor
        self.learnt_anchor: FormatAnchor | None = None
        self.line = first_line - 1  # the line read last
        self._on_first_example = on_first_example
        self.may_escape_surrogates = True
        self.examples = self.messages = self.characters = self.trained = 0

    def skip_line(self) -> int:
        """Count a line that is not read (the dataset service's over-long lines); returns its number."""
        self.line += 1
        return self.line

    def read_bytes(self, raw: bytes) -> dict[str, Any] | None:
        """:meth:`read` for a line's bytes (without its newline), which must be UTF-8."""
        return self.read(self._decode(raw))

    def read(self, text: str) -> dict[str, Any] | None:
        """Check the next line (without its newline): its example's JSON object, or None for a blank line.

        Raises :class:`~.problems.InvalidExample` for a line that is not a valid example.
        """
        self.line += 1
        if self.line == 1 and text.startswith(BYTE_ORDER_MARK):
            text = text[1:]
        if not text or text.isspace():
            return None
        try:
            example = _parse_json(text)
        except json.JSONDecodeError as error:
            fail("invalid_json", f"invalid JSON ({error.msg} at column {error.colno})")
        except RecursionError:
            fail("invalid_json", "invalid JSON (nested too deeply)")
        except ValueError as error:  # e.g. an integer literal longer than Python converts
            fail("invalid_json", f"invalid JSON ({shorten(str(error), 120)})")
        if self.may_escape_surrogates and may_escape_surrogates(text):
            _check_surrogates(text)
        # What follows runs for every line of every upload: it is written out here, not in
        # helpers, because a Python call per line costs about a percent of the validation speed.
        if type(example) is not dict:
            fail("not_an_object", f"expected a JSON object, got {json_type(example)}")
        example_format = ExampleFormat.CHAT if "messages" in example else detect_format(example)
        anchor = self.anchor
        if anchor is None:
            if self._on_first_example is not None:
                self._on_first_example(example_format)
            self.anchor = self.learnt_anchor = FormatAnchor(example_format, self.line)
        elif example_format is not anchor.format:
            fail(
                "mixed_formats",
                f"a {example_format.label} example, but line {anchor.line} is a "
                f"{anchor.format.label} example; all examples of a file must have the same format",
            )
        counts = ExampleCounts()
        try:
            # Not a dict of checks by format: hashing an enum member costs a Python call.
            if example_format is ExampleFormat.CHAT:
                check_chat(example, counts)
            elif example_format is ExampleFormat.PROMPT_COMPLETION:
                check_prompt_completion(example, counts)
            else:
                check_preference(example, counts)
        except RecursionError:  # a JSON value nested deeply enough to exhaust the checks' stack
            fail("invalid_example", "the example is nested too deeply")
        # Only valid examples count: statistics describe what will train.
        self.examples += 1
        self.messages += counts.messages
        self.characters += counts.characters
        self.trained += counts.trained
        return example

    def take_valid_lines(
        self, example_format: ExampleFormat, lines: int, examples: int, counts: ExampleCounts
    ) -> bool:
        """Count the next ``lines`` lines, none blank, which :mod:`.batches` found to be valid examples.

        Returns False, changing nothing, when they cannot be taken whole: they are not in the
        file's format, or the first of them sets the file's format and ``on_first_example``
        may refuse it. The caller then reads them one by one (:meth:`read`), which finds the
        same examples valid and says what is wrong with the others.
        """
        anchor = self.anchor
        if anchor is None:
            if self._on_first_example is not None:
                return False
            self.anchor = self.learnt_anchor = FormatAnchor(example_format, self.line + 1)
        elif example_format is not anchor.format:
            return False
        self.line += lines
        self.examples += examples
        self.messages += counts.messages
        self.characters += counts.characters
        self.trained += counts.trained
        return True

    def read_example(self, text: str) -> TrainingExample | None:
        """:meth:`read`, and the typed example of a valid line."""
        example = self.read(text)
        if example is None:
            return None
        assert self.anchor is not None  # set by the first example
        return build_example(example, self.anchor.format)

    def read_example_bytes(self, raw: bytes) -> TrainingExample | None:
        """:meth:`read_example` for a line's bytes (without its newline)."""
        return self.read_example(self._decode(raw))

    def _decode(self, raw: bytes) -> str:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as error:
            self.line += 1  # the line that is not text
            fail(
                "invalid_utf8",
                f"not UTF-8 (byte 0x{raw[error.start]:02x} at byte {error.start + 1} of the line)",
            )


_scan_json = json.JSONDecoder().scan_once


def _parse_json(text: str) -> Any:
    """``json.loads(text)``, faster for the common case of a line with nothing around its value.

    ``json.loads`` spends about as long on its whitespace handling as on parsing a typical
    example; the decoder's scanner alone parses one value at the start of the text. Whatever
    it cannot take whole (surrounding whitespace, errors) goes to ``json.loads``, so results
    and error messages are exactly json.loads'.
    """
    try:
        value, end = _scan_json(text, 0)
    except (StopIteration, ValueError):
        return json.loads(text)
    if end == len(text) or (end == len(text) - 1 and text[end] == "\r"):  # CRLF files are common
        return value
    return json.loads(text)


# What may be a \uD800-\uDFFF escape (found fast: the pattern starts with a literal).
_ANY_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def may_escape_surrogates(text: str) -> bool:
    """Whether JSON text may escape a UTF-16 surrogate: a fast test, worth running on many lines at once.

    One-character ``in`` is a memchr, and the pattern's search is faster than ``"\\u" in text``:
    the test costs a few percent of checking the lines it clears.
    """
    return "\\" in text and _ANY_SURROGATE_ESCAPE.search(text) is not None
# A \uD800-\uDFFF escape that is an escape: preceded by an even number of backslashes.
_SURROGATE_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u([dD][89a-fA-F][0-9a-fA-F]{2})")


def _check_surrogates(text: str) -> None:
    """Refuse JSON that escapes half a UTF-16 surrogate pair.

    ``"\\ud83c\\udf89"`` is 🎉, but a lone ``"\\ud800"`` is no character: it has no UTF-8
    encoding, so no tokenizer can read it (and OpenAI's files are UTF-8 text). Text decoded
    from UTF-8 holds no surrogates, so only escapes can bring them in; valid JSON has escapes
    only inside strings, so the pairs can be checked on the line's text.
    """
    pending = None  # a high surrogate's escape, and where a low one must start to complete it
    for match in _SURROGATE_ESCAPE.finditer(text):
        code = match.group(1)
        start = match.start(1) - 2
        if code[1] in "89abAB":  # high half
            if pending is not None:
                break
            pending = (code, match.end())
        elif pending is not None and pending[1] == start:
            pending = None
        else:  # a low half without its high half (or after an unfinished one, reported instead)
            pending = pending or (code, -1)
            break
    if pending is not None:
        fail(
            "invalid_unicode",
            f"\\u{pending[0]} in the JSON text is half of a UTF-16 surrogate pair, not a character",
        )
