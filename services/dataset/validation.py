"""Validates fine-tuning JSONL as its bytes stream past: line by line, in bounded memory.

:class:`JsonlValidator` is fed a file's chunks in order (``feed``) and says at the end
(``finish``) whether it is valid fine-tuning data, and if not, why, line by line. Chunk
boundaries may fall anywhere, even inside a UTF-8 character. It is made of three parts,
which the upload path (:mod:`.parallel_validation`) also uses to check blocks in parallel:

* :class:`LineSplitter` cuts the stream into blocks of whole, numbered lines. It holds at
  most ``max_line_bytes`` of an unfinished line; a longer line is reported, not buffered.
* :func:`check_block` checks one block against the file's format (a pure function).
* :class:`VerdictTally` adds the blocks' verdicts up, in order, into a :class:`ValidationResult`.

What a valid file is (OpenAI's documented rules, see docs of the fine-tuning guide and the
cookbook's ``Chat_finetuning_data_prep`` checks):

* UTF-8 JSONL; a byte order mark at the start of the file is tolerated;
* each non-blank line one JSON object, an example in one of three formats, the same for
  the whole file:

  - chat: ``{"messages": [...], "tools"?: [...], "parallel_tool_calls"?: bool}``
    (deprecated ``functions`` too); roles system, developer, user, assistant, tool and the
    deprecated function; at least one assistant message, trained unless ``weight`` is 0;
  - prompt/completion: ``{"prompt": "...", "completion": "..."}``;
  - preference (DPO): ``{"input": {"messages": [...]}, "preferred_output": [...],
    "non_preferred_output": [...]}``, or the 2025 spec's ``preferred_completion`` /
    ``non_preferred_completion`` names;

* blank (empty or whitespace-only) lines are skipped, not refused: editors and ``cat``
  leave them at the end of files, and they hold no example either way. They still count
  in line numbers, so every line number is the one an editor shows.

Keys a format does not define are refused rather than ignored, so a typo such as
``"mesages"`` or ``"wieght"`` is caught at upload instead of silently changing what trains.
Each line reports at most one problem (its first), and the first ``max_problems`` are
kept. Counting examples against a minimum is not done here: upload cannot know whether a
file will be a training or a validation file (the trainer checks that when a job starts).
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any, NoReturn

DEFAULT_MAX_PROBLEMS = 20
DEFAULT_MAX_LINE_BYTES = 16 * 1024 * 1024
_BYTE_ORDER_MARK = "\ufeff"


class ExampleFormat(enum.StrEnum):
    """The shape of a fine-tuning file's examples."""

    CHAT = "chat"
    PROMPT_COMPLETION = "prompt_completion"
    PREFERENCE = "preference"

    @property
    def label(self) -> str:
        return self.value.replace("_", "/")


@dataclass(frozen=True)
class Problem:
    """One reason a file is invalid: its 1-based line (0: the whole file), a stable code, and why."""

    line: int
    code: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}" if self.line else self.message


@dataclass(frozen=True)
class FileStatistics:
    """What a valid fine-tuning file contains.

    ``messages`` counts chat and preference messages (0 for prompt/completion);
    ``characters`` the text of message contents, or of prompts and completions;
    ``trained_messages`` the targets training learns from: assistant messages with
    weight 1, preferred and non-preferred outputs, completions.
    """

    format: ExampleFormat
    examples: int
    messages: int
    characters: int
    trained_messages: int


@dataclass(frozen=True)
class ValidationResult:
    """The verdict on a whole file: valid with statistics, or the first problems and their count."""

    lines: int
    problems: tuple[Problem, ...]
    problem_count: int
    statistics: FileStatistics | None

    @property
    def valid(self) -> bool:
        return self.problem_count == 0

    def summary(self) -> str:
        """One line for OpenAI's ``status_details``, e.g. ``3 problems; first: line 3: invalid JSON ...``."""
        if self.valid:
            return ""
        first = self.problems[0]
        if self.problem_count == 1:
            return f"1 problem: {first}"
        return f"{self.problem_count} problems; first: {first}"


@dataclass(frozen=True)
class FormatAnchor:
    """A file's example format, and the line of the first example, which set it."""

    format: ExampleFormat
    line: int


@dataclass(frozen=True)
class LineBlock:
    """Whole lines of a file, newlines between them but not after: lines ``first_line`` on."""

    first_line: int
    data: bytes


@dataclass(frozen=True)
class LongLine:
    """A line longer than the limit, whose bytes were dropped as they came."""

    line: int


class LineSplitter:
    """Cuts a byte stream into blocks of whole, numbered lines, wherever the chunks end.

    It holds at most ``max_line_bytes`` of an unfinished line between chunks; a longer
    line is dropped as it arrives and reported as a :class:`LongLine`.
    """

    def __init__(self, max_line_bytes: int) -> None:
        self.max_line_bytes = max_line_bytes
        self._partial = bytearray()
        self._partial_too_long = False
        self._next_line = 1

    def feed(self, chunk: bytes) -> list[LineBlock | LongLine]:
        """The lines ``chunk`` completes, in order; the start of an unfinished last line is kept."""
        last_newline = chunk.rfind(b"\n")
        if last_newline < 0:
            self._hold(chunk)
            return []
        pieces: list[LineBlock | LongLine] = []
        start = 0
        if self._partial or self._partial_too_long:
            # The held line ends at this chunk's first newline.
            first_newline = chunk.find(b"\n")
            self._hold(chunk[:first_newline])
            pieces.append(self._take_partial())
            start = first_newline + 1
        if start <= last_newline:
            data = chunk[start:last_newline]
            pieces.append(LineBlock(self._next_line, data))
            self._next_line += data.count(b"\n") + 1
        self._hold(chunk[last_newline + 1 :])
        return pieces

    def finish(self) -> list[LineBlock | LongLine]:
        """The last line, when the stream does not end with a newline."""
        if self._partial or self._partial_too_long:
            return [self._take_partial()]
        return []

    def _hold(self, piece: bytes) -> None:
        if self._partial_too_long or not piece:
            return
        if len(self._partial) + len(piece) > self.max_line_bytes:
            self._partial_too_long = True
            self._partial = bytearray()
            return
        self._partial += piece

    def _take_partial(self) -> LineBlock | LongLine:
        line = self._next_line
        self._next_line += 1
        piece: LineBlock | LongLine = (
            LongLine(line) if self._partial_too_long else LineBlock(line, bytes(self._partial))
        )
        self._partial = bytearray()
        self._partial_too_long = False
        return piece


@dataclass(frozen=True)
class BlockVerdict:
    """What checking one block of lines found (plain data: it crosses process boundaries)."""

    lines: int
    problems: list[Problem]
    problem_count: int
    # The file's format as the block found it, when it was not known before the block.
    anchor: FormatAnchor | None
    examples: int
    messages: int
    characters: int
    trained: int


def check_block(
    block: LineBlock,
    anchor: FormatAnchor | None,
    *,
    max_problems: int = DEFAULT_MAX_PROBLEMS,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
) -> BlockVerdict:
    """Check a block of whole lines against the file's format (learnt from its first example if None).

    A pure function of its arguments, so blocks can be checked in any process, in
    parallel, once the file's format is known.
    """
    checker = _LineChecker(block.first_line, anchor, max_problems, max_line_bytes)
    checker.check_block(block.data)
    return checker.verdict()


class VerdictTally:
    """Adds up the verdicts of a file's blocks, in line order, into the file's :class:`ValidationResult`."""

    def __init__(
        self, *, max_problems: int = DEFAULT_MAX_PROBLEMS, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    ) -> None:
        if max_problems < 1 or max_line_bytes < 1:
            raise ValueError("max_problems and max_line_bytes must be positive")
        self.max_problems = max_problems
        self.max_line_bytes = max_line_bytes
        self.anchor: FormatAnchor | None = None
        self._lines = 0
        self._problems: list[Problem] = []
        self._problem_count = 0
        self._examples = self._messages = self._characters = self._trained = 0

    def add(self, verdict: BlockVerdict) -> None:
        self._lines += verdict.lines
        self._problems.extend(verdict.problems[: self.max_problems - len(self._problems)])
        self._problem_count += verdict.problem_count
        self.anchor = self.anchor or verdict.anchor
        self._examples += verdict.examples
        self._messages += verdict.messages
        self._characters += verdict.characters
        self._trained += verdict.trained

    def add_long_line(self, long_line: LongLine) -> None:
        self._lines += 1
        self._add_problem(_line_too_long(long_line.line, self.max_line_bytes))

    def result(self) -> ValidationResult:
        """The file's verdict, once every block has been added."""
        problems, count = list(self._problems), self._problem_count
        if self._examples == 0 and count == 0:
            problems, count = [Problem(0, "no_examples", "the file contains no examples")], 1
        statistics = None
        if count == 0 and self.anchor is not None:
            statistics = FileStatistics(
                self.anchor.format, self._examples, self._messages, self._characters, self._trained
            )
        return ValidationResult(self._lines, tuple(problems), count, statistics)

    def _add_problem(self, problem: Problem) -> None:
        self._problem_count += 1
        if len(self._problems) < self.max_problems:
            self._problems.append(problem)


class JsonlValidator:
    """Checks a JSONL fine-tuning file fed in chunks, in this thread; see the module docstring.

    ``feed`` every chunk in order, then call ``finish`` once. Memory stays bounded by
    ``max_line_bytes`` plus one chunk, whatever the file's size. (The upload path runs the
    same splitter, checks and tally, spreading blocks over worker processes instead.)
    """

    def __init__(
        self, *, max_problems: int = DEFAULT_MAX_PROBLEMS, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    ) -> None:
        self._tally = VerdictTally(max_problems=max_problems, max_line_bytes=max_line_bytes)
        self._splitter = LineSplitter(max_line_bytes)

    def feed(self, chunk: bytes) -> None:
        """Check the lines ``chunk`` completes; keep the start of an unfinished last line."""
        for piece in self._splitter.feed(chunk):
            self._check(piece)

    def finish(self) -> ValidationResult:
        """Check the last line (a file need not end with a newline) and return the verdict."""
        for piece in self._splitter.finish():
            self._check(piece)
        return self._tally.result()

    def _check(self, piece: LineBlock | LongLine) -> None:
        if isinstance(piece, LongLine):
            self._tally.add_long_line(piece)
            return
        self._tally.add(
            check_block(
                piece,
                self._tally.anchor,
                max_problems=self._tally.max_problems,
                max_line_bytes=self._tally.max_line_bytes,
            )
        )


def _line_too_long(line: int, max_line_bytes: int) -> Problem:
    return Problem(
        line, "line_too_long", f"the line is longer than {max_line_bytes} bytes, the limit for one example"
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


class _Invalid(Exception):
    """The first problem found in an example; caught per line and turned into a Problem."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _fail(code: str, message: str) -> NoReturn:
    raise _Invalid(code, message)


class _LineChecker:
    """Checks the lines of one block, one problem per line at most, and counts what the valid ones hold."""

    def __init__(
        self, first_line: int, anchor: FormatAnchor | None, max_problems: int, max_line_bytes: int
    ) -> None:
        self.max_problems = max_problems
        self.max_line_bytes = max_line_bytes
        self._anchor = anchor
        self._learnt_anchor: FormatAnchor | None = None
        self._line = first_line - 1  # the line being checked
        self._first_line = first_line
        self._problems: list[Problem] = []
        self._problem_count = 0
        self._examples = self._messages = self._characters = self._trained = 0

    def verdict(self) -> BlockVerdict:
        return BlockVerdict(
            lines=self._line - self._first_line + 1,
            problems=self._problems,
            problem_count=self._problem_count,
            anchor=self._learnt_anchor,
            examples=self._examples,
            messages=self._messages,
            characters=self._characters,
            trained=self._trained,
        )

    def check_block(self, block: bytes) -> None:
        """Check the block's lines, decoding them in one go when the block is valid UTF-8."""
        if len(block) > self.max_line_bytes:
            # A line in it may be over the limit: only per-line byte lengths can tell.
            for line in block.split(b"\n"):
                self._check_line_bytes(line)
            return
        try:
            text = block.decode("utf-8")
        except UnicodeDecodeError:
            for line in block.split(b"\n"):
                self._check_line_bytes(line)
            return
        for line in text.split("\n"):
            self._check_line(line)

    def _check_line_bytes(self, line: bytes) -> None:
        if len(line) > self.max_line_bytes:
            self._line += 1
            self._report(_line_too_long(self._line, self.max_line_bytes))
            return
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as error:
            self._line += 1
            self._report_here(
                "invalid_utf8",
                f"not UTF-8 (byte 0x{line[error.start]:02x} at byte {error.start + 1} of the line)",
            )
            return
        self._check_line(text)

    # One line: JSON, then the example.

    def _check_line(self, text: str) -> None:
        self._line += 1
        if self._line == 1 and text.startswith(_BYTE_ORDER_MARK):
            text = text[1:]
        if not text or text.isspace():
            return
        try:
            example = _parse_json(text)
        except json.JSONDecodeError as error:
            self._report_here("invalid_json", f"invalid JSON ({error.msg} at column {error.colno})")
            return
        except RecursionError:
            self._report_here("invalid_json", "invalid JSON (nested too deeply)")
            return
        except ValueError as error:  # e.g. an integer literal longer than Python converts
            self._report_here("invalid_json", f"invalid JSON ({_shorten(str(error), 120)})")
            return
        try:
            self._check_example(example)
        except _Invalid as invalid:
            self._report_here(invalid.code, invalid.message)
        except RecursionError:  # a JSON value nested deeply enough to exhaust the checks' stack
            self._report_here("invalid_example", "the example is nested too deeply")

    def _check_example(self, example: Any) -> None:
        if type(example) is not dict:
            _fail("not_an_object", f"expected a JSON object, got {_json_type(example)}")
        example_format = _detect_format(example)
        anchor = self._anchor
        if anchor is None:
            anchor = self._anchor = self._learnt_anchor = FormatAnchor(example_format, self._line)
        elif example_format is not anchor.format:
            _fail(
                "mixed_formats",
                f"a {example_format.label} example, but line {anchor.line} is a "
                f"{anchor.format.label} example; all examples of a file must have the same format",
            )
        tally = _Tally()
        if example_format is ExampleFormat.CHAT:
            _check_chat(example, tally)
        elif example_format is ExampleFormat.PROMPT_COMPLETION:
            _check_prompt_completion(example, tally)
        else:
            _check_preference(example, tally)
        # Only valid examples count: statistics describe what will train.
        self._examples += 1
        self._messages += tally.messages
        self._characters += tally.characters
        self._trained += tally.trained

    def _report_here(self, code: str, message: str) -> None:
        self._report(Problem(self._line, code, message))

    def _report(self, problem: Problem) -> None:
        self._problem_count += 1
        if len(self._problems) < self.max_problems:
            self._problems.append(problem)


# The example formats. Each checker adds what the example holds to a tally, or raises
# _Invalid naming the first thing wrong and where, as a path such as
# messages[2].tool_calls[0].function.name. This runs for every line of every upload, so
# paths are only formatted once something is wrong.


class _Tally:
    """What one example holds, counted while it is checked."""

    __slots__ = ("assistant", "characters", "messages", "trained")

    def __init__(self) -> None:
        self.messages = 0
        self.characters = 0
        self.trained = 0
        self.assistant = 0


_PREFERENCE_KEYS = frozenset(
    {"input", "preferred_output", "non_preferred_output", "preferred_completion", "non_preferred_completion"}
)


def _detect_format(example: dict[str, Any]) -> ExampleFormat:
    if "messages" in example:
        return ExampleFormat.CHAT
    if "prompt" in example or "completion" in example:
        return ExampleFormat.PROMPT_COMPLETION
    if not _PREFERENCE_KEYS.isdisjoint(example):
        return ExampleFormat.PREFERENCE
    found = ", ".join(_shorten(key, 40) for key in list(example)[:5]) or "none"
    _fail(
        "unknown_format",
        "not a fine-tuning example: expected messages (chat), prompt and completion, or input, "
        f"preferred_output and non_preferred_output (preference); keys found: {found}",
    )


_CHAT_KEYS = frozenset({"messages", "tools", "parallel_tool_calls", "functions"})


def _check_chat(example: dict[str, Any], tally: _Tally) -> None:
    _check_keys(example, _CHAT_KEYS, "the example")
    _check_messages(example["messages"], "messages", tally)
    if tally.assistant == 0:
        _fail(
            "missing_assistant_message", "no assistant message: each example needs at least one to train on"
        )
    if tally.trained == 0:
        _fail("no_trained_messages", "every assistant message has weight 0, so the example trains nothing")
    if len(example) > 1:
        _check_tool_settings(example, "")


_PROMPT_COMPLETION_KEYS = frozenset({"prompt", "completion"})


def _check_prompt_completion(example: dict[str, Any], tally: _Tally) -> None:
    _check_keys(example, _PROMPT_COMPLETION_KEYS, "a prompt/completion example")
    for key in ("prompt", "completion"):
        if key not in example:
            _fail(f"invalid_{key}", f"missing {key}")
    prompt, completion = example["prompt"], example["completion"]
    if type(prompt) is not str:
        _fail("invalid_prompt", f"prompt must be a string, got {_json_type(prompt)}")
    if type(completion) is not str:
        _fail("invalid_completion", f"completion must be a string, got {_json_type(completion)}")
    if not completion:
        _fail("no_trained_messages", "completion is empty, so the example trains nothing")
    tally.characters += len(prompt) + len(completion)
    tally.trained += 1


_PREFERENCE_INPUT_KEYS = frozenset({"messages", "tools", "parallel_tool_calls"})
_PREFERENCE_OUTPUTS = (
    ("preferred_output", "preferred_completion"),
    ("non_preferred_output", "non_preferred_completion"),
)


def _check_preference(example: dict[str, Any], tally: _Tally) -> None:
    _check_keys(example, _PREFERENCE_KEYS, "a preference example")
    if "input" not in example:
        _fail("invalid_input", "missing input")
    source = example["input"]
    if type(source) is not dict:
        _fail("invalid_input", f"input must be an object with messages, got {_json_type(source)}")
    _check_keys(source, _PREFERENCE_INPUT_KEYS, "input")
    _check_messages(source.get("messages"), "input.messages", tally)
    last_role = source["messages"][-1]["role"]
    if last_role != "user":
        _fail(
            "invalid_input",
            f"input.messages must end with a user message (the turn both outputs answer), not {last_role}",
        )
    _check_tool_settings(source, "input.")
    for name, alias in _PREFERENCE_OUTPUTS:
        path, output = _one_of(example, name, alias)
        if type(output) is not list or not output:
            _fail("invalid_output", f"{path} must be a non-empty list of assistant messages")
        for index, message in enumerate(output):
            if type(message) is dict and message.get("role") != "assistant":
                _fail(
                    "invalid_output",
                    f"{path}[{index}]: must be an assistant message, not {_describe_role(message)}",
                )
            _check_message(message, path, index, _OUTPUT_MESSAGE_KEYS, tally)


def _one_of(example: dict[str, Any], name: str, alias: str) -> tuple[str, Any]:
    if name in example and alias in example:
        _fail("invalid_output", f"both {name} and {alias} are set; they are two names for one field")
    if name in example:
        return name, example[name]
    if alias in example:
        return alias, example[alias]
    _fail("invalid_output", f"missing {name}")


# Messages.

_ROLE_KEYS: dict[str, frozenset[str]] = {
    "system": frozenset({"role", "content", "name"}),
    "developer": frozenset({"role", "content", "name"}),
    "user": frozenset({"role", "content", "name"}),
    "assistant": frozenset({"role", "content", "name", "weight", "tool_calls", "function_call"}),
    "tool": frozenset({"role", "content", "tool_call_id"}),
    "function": frozenset({"role", "content", "name"}),
}
# Preference outputs are what the model should (not) say: no per-message weight there.
_OUTPUT_MESSAGE_KEYS = _ROLE_KEYS["assistant"] - {"weight"}
_ROLES = ", ".join(_ROLE_KEYS)
# Roles whose message may be just role and text content.
_PLAIN_ROLES = frozenset({"system", "developer", "user", "assistant"})
_ABSENT = object()


def _check_messages(messages: Any, path: str, tally: _Tally) -> None:
    if type(messages) is not list or not messages:
        _fail("missing_messages_list", f"{path} must be a non-empty list, got {_json_type(messages)}")
    # Most messages are {"role": ..., "content": "..."} of a plain role: they are recognised
    # here in a few operations and counted in locals. Anything else takes the full check.
    plain = characters = replies = 0
    for index, message in enumerate(messages):
        if type(message) is dict and len(message) == 2:
            content = message.get("content")
            role = message.get("role")
            if type(content) is str and type(role) is str and role in _PLAIN_ROLES:
                plain += 1
                characters += len(content)
                if role == "assistant":
                    replies += 1
                continue
        _check_message(message, path, index, None, tally)
    tally.messages += plain
    tally.characters += characters
    tally.assistant += replies
    tally.trained += replies


def _check_message(
    message: Any, path: str, index: int, allowed_keys: frozenset[str] | None, tally: _Tally
) -> None:
    """Check ``path[index]``; ``allowed_keys`` overrides its role's keys (preference outputs)."""
    if type(message) is not dict:
        _fail("invalid_message", f"{path}[{index}]: a message must be an object, got {_json_type(message)}")
    role = message.get("role")
    role_keys = _ROLE_KEYS.get(role) if type(role) is str else None
    if role_keys is None:
        if "role" not in message:
            _fail("message_missing_key", f"{path}[{index}]: missing role")
        _fail("unrecognized_role", f"{path}[{index}]: unknown role {_shorten(role)}; roles are {_ROLES}")
    keys = allowed_keys or role_keys
    if not keys.issuperset(message):
        _fail_unknown_key(message, keys, f"{path}[{index}]")
    if "name" in message and type(message["name"]) is not str:
        _fail("invalid_message", f"{path}[{index}].name must be a string, got {_json_type(message['name'])}")
    tally.messages += 1

    content = message.get("content", _ABSENT)
    if role == "assistant":
        _check_assistant(message, content, path, index, tally)
        return
    if role == "tool" and type(message.get("tool_call_id")) is not str:
        _fail("message_missing_key", f"{path}[{index}]: a tool message needs a string tool_call_id")
    if role == "function" and type(message.get("name")) is not str:
        _fail("message_missing_key", f"{path}[{index}]: a function message needs a string name")
    if type(content) is str:
        tally.characters += len(content)
    elif content is _ABSENT:
        _fail("message_missing_key", f"{path}[{index}]: missing content")
    else:
        tally.characters += _text_length(content, f"{path}[{index}].content")


def _check_assistant(message: dict[str, Any], content: Any, path: str, index: int, tally: _Tally) -> None:
    weight = message.get("weight", 1)
    if type(weight) not in (int, float) or weight not in (0, 1):
        _fail("invalid_weight", f"{path}[{index}].weight must be 0 or 1, got {_shorten(weight)}")
    calls = False
    if "tool_calls" in message:
        _check_tool_calls(message["tool_calls"], f"{path}[{index}].tool_calls")
        calls = True
    if "function_call" in message:
        _check_function_call(message["function_call"], f"{path}[{index}].function_call")
        calls = True
    if type(content) is str:
        tally.characters += len(content)
    elif content is None or content is _ABSENT:
        # A reply may consist of tool calls alone; otherwise there is nothing to learn.
        if not calls:
            _fail("missing_content", f"{path}[{index}]: an assistant message needs content or tool_calls")
    else:
        tally.characters += _text_length(content, f"{path}[{index}].content")
    tally.assistant += 1
    if weight:
        tally.trained += 1


def _text_length(content: Any, where: str) -> int:
    """Characters of a message's text: a string, or a list of OpenAI text content parts."""
    if type(content) is str:
        return len(content)
    if type(content) is not list:
        _fail(
            "missing_content", f"{where} must be a string or a list of text parts, got {_json_type(content)}"
        )
    length = 0
    for index, part in enumerate(content):
        if type(part) is not dict:
            _fail(
                "invalid_content", f"{where}[{index}] must be a content part object, got {_json_type(part)}"
            )
        kind = part.get("type")
        if kind != "text":
            # Tailor's base models read text only, so image or audio parts could not be trained on.
            _fail(
                "unsupported_content",
                f"{where}[{index}]: only text parts are supported, not {_shorten(kind)}",
            )
        _check_keys(part, _TEXT_PART_KEYS, f"{where}[{index}]")
        text = part.get("text")
        if type(text) is not str:
            _fail("invalid_content", f"{where}[{index}].text must be a string, got {_json_type(text)}")
        length += len(text)
    return length


_TEXT_PART_KEYS = frozenset({"type", "text"})


# Tools: an assistant's calls, and the definitions an example offers.

_TOOL_CALL_KEYS = frozenset({"id", "type", "function"})
_FUNCTION_CALL_KEYS = frozenset({"name", "arguments"})


def _check_tool_calls(calls: Any, where: str) -> None:
    if type(calls) is not list or not calls:
        _fail("invalid_tool_calls", f"{where} must be a non-empty list, got {_json_type(calls)}")
    for index, call in enumerate(calls):
        at = f"{where}[{index}]"
        if type(call) is not dict:
            _fail("invalid_tool_calls", f"{at} must be an object, got {_json_type(call)}")
        _check_keys(call, _TOOL_CALL_KEYS, at)
        if type(call.get("id")) is not str:
            _fail("invalid_tool_calls", f"{at}.id must be a string")
        if call.get("type") != "function":
            _fail("invalid_tool_calls", f'{at}.type must be "function", got {_shorten(call.get("type"))}')
        _check_function_call(call.get("function"), f"{at}.function")


def _check_function_call(call: Any, where: str) -> None:
    if type(call) is not dict:
        _fail(
            "invalid_tool_calls", f"{where} must be an object with name and arguments, got {_json_type(call)}"
        )
    _check_keys(call, _FUNCTION_CALL_KEYS, where)
    name = call.get("name")
    if type(name) is not str or not name:
        _fail("invalid_tool_calls", f"{where}.name must be a non-empty string")
    if type(call.get("arguments")) is not str:
        _fail("invalid_tool_calls", f"{where}.arguments must be a string (the arguments' JSON text)")


_TOOL_KEYS = frozenset({"type", "function"})
_FUNCTION_KEYS = frozenset({"name", "description", "parameters", "strict"})


def _check_tool_settings(holder: dict[str, Any], prefix: str) -> None:
    """``tools``, ``functions`` and ``parallel_tool_calls`` of an example (or of a preference input)."""
    if "tools" in holder:
        tools = holder["tools"]
        if type(tools) is not list:
            _fail("invalid_tools", f"{prefix}tools must be a list, got {_json_type(tools)}")
        for index, tool in enumerate(tools):
            at = f"{prefix}tools[{index}]"
            if type(tool) is not dict or tool.get("type") != "function":
                _fail("invalid_tools", f'{at} must be an object with type "function"')
            _check_keys(tool, _TOOL_KEYS, at)
            _check_function_definition(tool.get("function"), f"{at}.function")
    if "functions" in holder:
        functions = holder["functions"]
        if type(functions) is not list:
            _fail("invalid_tools", f"{prefix}functions must be a list, got {_json_type(functions)}")
        for index, function in enumerate(functions):
            _check_function_definition(function, f"{prefix}functions[{index}]")
    if "parallel_tool_calls" in holder and type(holder["parallel_tool_calls"]) is not bool:
        _fail("invalid_tools", f"{prefix}parallel_tool_calls must be true or false")


def _check_function_definition(function: Any, where: str) -> None:
    if type(function) is not dict:
        _fail("invalid_tools", f"{where} must be an object, got {_json_type(function)}")
    _check_keys(function, _FUNCTION_KEYS, where)
    name = function.get("name")
    if type(name) is not str or not name:
        _fail("invalid_tools", f"{where}.name must be a non-empty string")
    if "description" in function and type(function["description"]) is not str:
        _fail("invalid_tools", f"{where}.description must be a string")
    if "parameters" in function and type(function["parameters"]) is not dict:
        _fail("invalid_tools", f"{where}.parameters must be a JSON Schema object")
    if "strict" in function and type(function["strict"]) is not bool:
        _fail("invalid_tools", f"{where}.strict must be true or false")


# Small helpers.


def _check_keys(value: dict[str, Any], allowed: frozenset[str], where: str) -> None:
    if not allowed.issuperset(value):
        _fail_unknown_key(value, allowed, where)


def _fail_unknown_key(value: dict[str, Any], allowed: frozenset[str], where: str) -> NoReturn:
    unknown = next(key for key in value if key not in allowed)
    known = ", ".join(sorted(allowed))
    _fail("unrecognized_key", f"{where}: unknown key {_shorten(unknown)}; expected only {known}")


def _describe_role(message: dict[str, Any]) -> str:
    role = message.get("role")
    return f"role {_shorten(role)}" if role is not None else "a message without role"


_JSON_TYPES = {
    dict: "an object",
    list: "a list",
    str: "a string",
    bool: "a boolean",
    int: "a number",
    float: "a number",
}


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if value == []:
        return "an empty list"
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _shorten(value: Any, limit: int = 60) -> str:
    """``value`` as JSON text, cut to ``limit`` characters: problems quote user data, briefly."""
    try:
        shown = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        shown = repr(value)
    if len(shown) > limit:
        shown = shown[: limit - 3] + "..."
    # JSON escapes can smuggle lone surrogates into strings; they have no UTF-8 encoding.
    return shown.encode("utf-8", "backslashreplace").decode("utf-8")
