"""Reading many lines at once, for uploads: the common shapes of examples, decoded by msgspec.

Reading a line with :class:`~.lines.ExampleReader` costs Python work for every value in it
(``json`` builds the dicts, the checks of :mod:`.rules` look at each key), which holds upload
validation near 100-150 MiB/s per core. Most lines of most files have one of a few plain
shapes, though, and msgspec decodes such a line straight into typed structs, in C, refusing
anything else: another key, type or role, invalid JSON or UTF-8, a lone surrogate escape.
The shapes, all valid by the rules of :mod:`.rules`:

* chat: ``{"messages": [...]}`` of plain messages (``{"role", "content"}`` with a string
  content and a role of :data:`~.rules.PLAIN_ROLES`, as :func:`~.rules.check_messages`
  recognises them first), ending with an assistant message: so it has one to train on;
* prompt/completion: two strings, the completion not empty;
* preference: ``{"input": {"messages": [...]}, "preferred_output": [m],
  "non_preferred_output": [m]}`` of plain messages, the input ending with a user message and
  each output one assistant message.

This is a recogniser, not a second copy of the rules: it only ever accepts, never refuses.
:func:`read_batch` takes a batch of lines whole when every line has the file's plain shape,
and counts them as :class:`~.lines.ExampleReader` would; otherwise it takes nothing and the
caller reads the lines one by one with the reader, so every problem, and its message, comes
from :mod:`.rules` alone. tests/unit/dataset/test_validation_properties.py checks that both
paths give the same verdict and counts on generated good and bad lines.

It needs msgspec (the dataset service's extra); the training worker reads files line by line
and does not import this module.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import chain
from operator import attrgetter, countOf, itemgetter
from typing import Any, Literal

import msgspec

from services.common.training_format.examples import ExampleFormat
from services.common.training_format.lines import ExampleReader
from services.common.training_format.rules import PLAIN_ROLES, ExampleCounts

# gc=False: these structs hold only strings and tuples, so they are left out of the garbage
# collector, whose passes over a block's worth of new objects would otherwise cost half the time.
_STRUCT_OPTIONS: dict[str, Any] = {"forbid_unknown_fields": True, "gc": False}


class _PlainMessage(msgspec.Struct, **_STRUCT_OPTIONS):
    role: Literal[tuple(sorted(PLAIN_ROLES))]  # type: ignore[valid-type]
    content: str


class _Chat(msgspec.Struct, **_STRUCT_OPTIONS):
    messages: tuple[_PlainMessage, ...]


class _PromptCompletion(msgspec.Struct, **_STRUCT_OPTIONS):
    prompt: str
    completion: str


class _PreferenceInput(msgspec.Struct, **_STRUCT_OPTIONS):
    messages: tuple[_PlainMessage, ...]


class _Preference(msgspec.Struct, **_STRUCT_OPTIONS):
    input: _PreferenceInput
    preferred_output: tuple[_PlainMessage]  # exactly one
    non_preferred_output: tuple[_PlainMessage]


_DECODERS = {
    ExampleFormat.CHAT: msgspec.json.Decoder(_Chat),
    ExampleFormat.PROMPT_COMPLETION: msgspec.json.Decoder(_PromptCompletion),
    ExampleFormat.PREFERENCE: msgspec.json.Decoder(_Preference),
}

# Counting runs over a whole batch in C-level iteration (map, chain, countOf): a Python call
# per line would cost as much as decoding it. Each pass over a batch's messages costs a few
# percent of the validation (they no longer fit the CPU's nearest caches), so there are few.
_messages = attrgetter("messages")
_role = attrgetter("role")
_content = attrgetter("content")
_last = itemgetter(-1)
_only = itemgetter(0)


def _count_messages(messages: list[tuple[_PlainMessage, ...]]) -> ExampleCounts:
    """The counts of the messages of several examples (each a tuple of messages)."""
    flat = list(chain.from_iterable(messages))
    counts = ExampleCounts()
    counts.messages = len(flat)
    counts.characters = sum(map(len, map(_content, flat)))
    # Plain assistant messages have no weight: each one trains.
    counts.assistant = counts.trained = countOf(map(_role, flat), "assistant")
    return counts


def _count_chat(examples: list[_Chat]) -> ExampleCounts | None:
    conversations = list(map(_messages, examples))
    # Ending with an assistant message, each has one to train on (check_chat's two last rules).
    if countOf(map(_role, map(_last, conversations)), "assistant") != len(conversations):
        return None
    return _count_messages(conversations)


def _count_prompt_completion(examples: list[_PromptCompletion]) -> ExampleCounts | None:
    completions = list(map(attrgetter("completion"), examples))
    if "" in completions:
        return None
    counts = ExampleCounts()
    counts.characters = sum(map(len, map(attrgetter("prompt"), examples))) + sum(map(len, completions))
    counts.trained = len(examples)
    return counts


def _count_preference(examples: list[_Preference]) -> ExampleCounts | None:
    inputs = list(map(_messages, map(attrgetter("input"), examples)))
    if countOf(map(_role, map(_last, inputs)), "user") != len(inputs):
        return None
    outputs = [
        *map(attrgetter("preferred_output"), examples),
        *map(attrgetter("non_preferred_output"), examples),
    ]
    if countOf(map(_role, map(_only, outputs)), "assistant") != len(outputs):
        return None
    return _count_messages(inputs + outputs)


_COUNTERS: dict[ExampleFormat, Callable[[list[Any]], ExampleCounts | None]] = {
    ExampleFormat.CHAT: _count_chat,
    ExampleFormat.PROMPT_COMPLETION: _count_prompt_completion,
    ExampleFormat.PREFERENCE: _count_preference,
}


def read_batch(reader: ExampleReader, block: bytes) -> bool:
    """Take the reader's next lines, ``block`` (newlines between them), whole if all are plain valid examples.

    True: they were counted, as :meth:`~.lines.ExampleReader.read` of each would have counted
    them. False: nothing changed, and the caller reads them one by one.
    """
    lines = block.split(b"\n")
    anchor = reader.anchor
    example_format = anchor.format if anchor is not None else _plain_format(lines[0])
    if example_format is None:
        return False
    try:
        # One decode per line, each of the whole line: a line holds exactly one value. (msgspec's
        # decode_lines is no faster, and takes any whitespace between values as a line's end.)
        examples = list(map(_DECODERS[example_format].decode, lines))
        counts = _COUNTERS[example_format](examples)
    except (msgspec.DecodeError, IndexError):  # IndexError: an empty list of messages
        return False
    if counts is None:
        return False
    return reader.take_valid_lines(example_format, len(lines), len(examples), counts)


def _plain_format(line: bytes) -> ExampleFormat | None:
    """The format whose plain shape ``line`` has, if any (the file's first example sets the format)."""
    for example_format, decoder in _DECODERS.items():
        try:
            decoder.decode(line)
        except msgspec.DecodeError:
            continue
        return example_format
    return None
