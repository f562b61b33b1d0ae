"""Validates fine-tuning JSONL as its bytes stream past: line by line, in bounded memory.

:class:`JsonlValidator` is fed a file's chunks in order (``feed``) and says at the end
(``finish``) whether it is valid fine-tuning data, and if not, why, line by line. Chunk
boundaries may fall anywhere, even inside a UTF-8 character. It is made of three parts,
which the upload path (:mod:`.parallel_validation`) also uses to check blocks in parallel:

* :class:`LineSplitter` cuts the stream into blocks of whole lines. It holds at most
  ``max_line_bytes`` of an unfinished line; a longer line is reported, not buffered. It
  neither copies nor counts the lines of a chunk: a block is handed out as its parts, and the
  tally numbers the lines, from each block's line count.
* :func:`check_block` checks one block against the file's format (a pure function): lines
  of the plain shapes in batches, decoded by msgspec (:mod:`~services.common.training_format.batches`),
  any other line with the line-by-line reader, which alone says what is wrong with a line.
* :class:`VerdictTally` adds the blocks' verdicts up, in order, into a :class:`ValidationResult`,
  moving the lines a block was checked as to the lines it is in the file.

What a valid example is, and the wording of every problem, is defined once, for the dataset
service and the training worker alike, in :mod:`services.common.training_format` (whose
docstring lists the rules). This module adds what only a stream of uploaded bytes needs:
blocks, a limit on a line's length (a resource limit of the service, not a rule of the
format), the first ``max_problems`` problems of a file, and its statistics.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from services.common.training_format import (
    NO_EXAMPLES,
    ExampleFormat,
    ExampleReader,
    FormatAnchor,
    InvalidExample,
    Problem,
    may_escape_surrogates,
)
from services.common.training_format.batches import read_batch

DEFAULT_MAX_PROBLEMS = 20
DEFAULT_MAX_LINE_BYTES = 16 * 1024 * 1024
# Bytes of lines checked in one batch (measured: 128 KiB to 1 MiB alike, 4 MiB 40-70% slower).
_BATCH_BYTES = 1024 * 1024
# Lines a block is retried in, batch by batch, when it cannot be taken whole.
_FALLBACK_BATCH_LINES = 64


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
class LineBlock:
    """Whole lines of a file, newlines between them but not after, as the parts the stream gave them.

    The parts (the end of an earlier chunk's unfinished line, then a view of the new chunk)
    are not joined here: the upload path copies them once, straight into shared memory.
    """

    parts: tuple[bytes | bytearray | memoryview, ...]

    @property
    def nbytes(self) -> int:
        return sum(map(len, self.parts))

    def data(self) -> bytes:
        return b"".join(self.parts)


@dataclass(frozen=True)
class LongLine:
    """A line longer than the limit, whose bytes were dropped as they came (the tally numbers it)."""


class LineSplitter:
    """Cuts a byte stream into blocks of whole lines, wherever the chunks end.

    It holds at most ``max_line_bytes`` of an unfinished line between chunks; a longer
    line is dropped as it arrives and reported as a :class:`LongLine`. A chunk's lines are
    neither copied nor counted (for a 1 MiB chunk that was a third of the upload path's own
    work): its block is a view of it, after the held start of its first line.
    """

    def __init__(self, max_line_bytes: int) -> None:
        self.max_line_bytes = max_line_bytes
        self._partial = bytearray()
        self._partial_too_long = False

    def feed(self, chunk: bytes) -> list[LineBlock | LongLine]:
        """The lines ``chunk`` completes, in order; the start of an unfinished last line is kept."""
        last_newline = chunk.rfind(b"\n")
        if last_newline < 0:
            self._hold(chunk)
            return []
        view = memoryview(chunk)
        pieces: list[LineBlock | LongLine] = []
        parts: tuple[bytearray, ...] = ()
        start = 0
        if self._partial or self._partial_too_long:
            # The held line ends at this chunk's first newline.
            first_newline = chunk.find(b"\n")
            if self._partial_too_long or len(self._partial) + first_newline > self.max_line_bytes:
                pieces.append(LongLine())
                start = first_newline + 1
            else:
                parts = (self._partial,)
            self._partial = bytearray()
            self._partial_too_long = False
        if start <= last_newline:
            pieces.append(LineBlock((*parts, view[start:last_newline])))
        self._hold(view[last_newline + 1 :])
        return pieces

    def finish(self) -> list[LineBlock | LongLine]:
        """The last line, when the stream does not end with a newline."""
        if self._partial_too_long:
            return [LongLine()]
        if self._partial:
            return [LineBlock((bytes(self._partial),))]
        return []

    def _hold(self, piece: bytes | memoryview) -> None:
        if self._partial_too_long or not piece:
            return
        if len(self._partial) + len(piece) > self.max_line_bytes:
            self._partial_too_long = True
            self._partial = bytearray()
            return
        self._partial += piece


@dataclass(frozen=True)
class BlockVerdict:
    """What checking one block of lines found (plain data: it crosses process boundaries)."""

    # The number the block's first line was checked as: the tally moves what it found by the
    # difference to the line's number in the file.
    first_line: int
    lines: int
    problems: list[Problem]
    problem_count: int
    # The file's format as the block found it, when it was not known before the block.
    anchor: FormatAnchor | None
    examples: int
    messages: int
    characters: int
    trained: int


# The number a block whose place in the file is not known yet is checked from: any past 1 will do
# (only line 1 may start with a byte order mark), and the tally renumbers what the block found.
SOME_LATER_LINE = 2


def check_block(
    block: bytes,
    anchor: FormatAnchor | None,
    *,
    first_line: int,
    max_problems: int = DEFAULT_MAX_PROBLEMS,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
) -> BlockVerdict:
    """Check whole lines, newlines between them, against the file's format (None: learn it from them).

    A pure function of its arguments, so blocks can be checked in any process, in
    parallel, once the file's format is known. ``first_line`` is the first line's number in
    the file, or, when that is not known yet, :data:`SOME_LATER_LINE` (the format is known, so
    the block does not start the file); :class:`VerdictTally` renumbers.
    """
    checker = _LineChecker(first_line, anchor, max_problems, max_line_bytes)
    checker.check_block(block)
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

    @property
    def next_line(self) -> int:
        """The number, in the file, of the first line of the next block."""
        return self._lines + 1

    def add(self, verdict: BlockVerdict) -> None:
        shift = self.next_line - verdict.first_line
        self._lines += verdict.lines
        kept = verdict.problems[: self.max_problems - len(self._problems)]
        self._problems.extend(replace(problem, line=problem.line + shift) for problem in kept)
        self._problem_count += verdict.problem_count
        if self.anchor is None and verdict.anchor is not None:
            self.anchor = replace(verdict.anchor, line=verdict.anchor.line + shift)
        self._examples += verdict.examples
        self._messages += verdict.messages
        self._characters += verdict.characters
        self._trained += verdict.trained

    def add_long_line(self) -> None:
        self._add_problem(_line_too_long(self.next_line, self.max_line_bytes))
        self._lines += 1

    def result(self) -> ValidationResult:
        """The file's verdict, once every block has been added."""
        problems, count = list(self._problems), self._problem_count
        if self._examples == 0 and count == 0:
            problems, count = [NO_EXAMPLES], 1
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
            self._tally.add_long_line()
            return
        self._tally.add(
            check_block(
                piece.data(),
                self._tally.anchor,
                first_line=self._tally.next_line,
                max_problems=self._tally.max_problems,
                max_line_bytes=self._tally.max_line_bytes,
            )
        )



def _line_too_long(line: int, max_line_bytes: int) -> Problem:
    return Problem(
        line, "line_too_long", f"the line is longer than {max_line_bytes} bytes, the limit for one example"
    )


class _LineChecker:
    """Checks the lines of one block with an :class:`ExampleReader`, and keeps the first problems."""

    def __init__(
        self, first_line: int, anchor: FormatAnchor | None, max_problems: int, max_line_bytes: int
    ) -> None:
        self.max_problems = max_problems
        self.max_line_bytes = max_line_bytes
        self._reader = ExampleReader(anchor, first_line=first_line)
        self._first_line = first_line
        self._problems: list[Problem] = []
        self._problem_count = 0

    def verdict(self) -> BlockVerdict:
        reader = self._reader
        return BlockVerdict(
            first_line=self._first_line,
            lines=reader.line - self._first_line + 1,
            problems=self._problems,
            problem_count=self._problem_count,
            anchor=reader.learnt_anchor,
            examples=reader.examples,
            messages=reader.messages,
            characters=reader.characters,
            trained=reader.trained,
        )

    def check_block(self, block: bytes) -> None:
        """Check the block's lines: in batches of plain examples where it can, else one by one."""
        if len(block) > self.max_line_bytes:
            # A line in it may be over the limit: only per-line byte lengths can tell.
            for line in block.split(b"\n"):
                self._check_line_bytes(line)
            return
        # Batches of about _BATCH_BYTES: the objects of a larger one no longer fit the CPU's caches.
        start = 0
        while (end := block.find(b"\n", start + _BATCH_BYTES)) >= 0:
            self._check_batch(block[start:end])
            start = end + 1
        self._check_batch(block[start:])

    def _check_batch(self, block: bytes) -> None:
        if read_batch(self._reader, block):
            return
        lines = block.split(b"\n")
        # Some line is not a plain example (it may well be valid): the block's other lines still
        # go in batches, so that one such line does not cost its whole block the fast path.
        for start in range(0, len(lines), _FALLBACK_BATCH_LINES):
            batch = b"\n".join(lines[start : start + _FALLBACK_BATCH_LINES])
            if not read_batch(self._reader, batch):
                self._check_one_by_one(batch)

    def _check_one_by_one(self, block: bytes) -> None:
        """Check each line with the reader, decoding them in one go when they are valid UTF-8."""
        try:
            text = block.decode("utf-8")
        except UnicodeDecodeError:
            for line in block.split(b"\n"):
                self._check_line_bytes(line)
            return
        reader = self._reader
        # One search of the block spares its lines theirs (surrogate escapes are rare).
        reader.may_escape_surrogates = may_escape_surrogates(text)
        read = reader.read
        for line in text.split("\n"):
            try:
                read(line)
            except InvalidExample as invalid:
                self._report(invalid.at(reader.line))

    def _check_line_bytes(self, line: bytes) -> None:
        reader = self._reader
        if len(line) > self.max_line_bytes:
            self._report(_line_too_long(reader.skip_line(), self.max_line_bytes))
            return
        try:
            reader.read_bytes(line)
        except InvalidExample as invalid:
            self._report(invalid.at(reader.line))

    def _report(self, problem: Problem) -> None:
        self._problem_count += 1
        if len(self._problems) < self.max_problems:
            self._problems.append(problem)
