"""A model's reply as OpenAI's ``tool_calls``: one parser per format a chat template writes calls in.

The formats are named in :mod:`services.common.model_families` (``ToolCallFormat``); a
replica resolves its format once at start-up and parses a choice's text with it only when
the request carries tools. Nothing here imports vLLM or torch: both engines' text goes
through the same parser, above the engines.

What the parsers promise, the same for every format:

- **Complete and streamed agree.** :func:`parse_reply` is :class:`ToolCallStream` fed the
  whole reply at once, so a reply split into any chunks gives the same content and calls.
- **Hold back, then release.** While text may still become a tool call (a prefix of
  ``<tool_call>``, a llama3_json reply opening with ``{``) it is held; as soon as it cannot,
  it is released as content. A call is emitted once, whole, when its closing marker (or the
  end of its JSON) arrives; its arguments are never streamed in pieces.
- **Content stays content.** Text before a call (and between or after calls) is content;
  whitespace that only separates content from a call, or calls from each other (the
  templates write a newline there), is dropped. A reply that is only calls has no content.
- **A call that does not parse is text.** A region whose JSON is not a call (bad JSON, no
  ``name``, arguments that are not an object) is released as content exactly as written,
  and the choice keeps its normal finish reason unless another call did parse. Calls
  already emitted are never taken back, so the unit of fallback is one call region.
- **Arguments** are the parsed JSON object re-serialised with ``json.dumps(...,
  ensure_ascii=False)`` (vLLM's choice): always valid JSON, non-ASCII kept as is, and the
  same text OpenAI's training files (written with ``json.dumps``) carry, so a conversation
  sent back renders as the model was trained on it. Non-finite numbers (NaN) are refused.
- **Ids** are ``call_`` followed by 24 random alphanumerics, OpenAI-like and opaque; the
  mistral format's are 9 alphanumerics instead (Mistral's templates refuse any other id
  when the conversation comes back), and the id the model wrote is kept when it is one.

Formats (what the templates write; see ``model_families.ToolCallFormat``):

- ``hermes``: ``<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>`` per call;
  an unterminated last region counts when its JSON is complete (the model ended right after).
- ``llama3_json``: the whole reply is ``{"name": ..., "parameters": {...}}`` (``arguments``
  accepted too), several calls separated by ``;``. A reply that does not open with ``{`` is
  content from its first character.
- ``mistral``: ``[TOOL_CALLS]`` followed by a JSON array of calls (``id`` optional).
- ``json_block``: a fenced block ``\\`\\`\\`tool_call\\n{...}\\n\\`\\`\\``` per call (Gemma has no
  tool tokens).
- ``phi4``: ``<|tool_call|>[{...}, ...]<|/tool_call|>``.
"""

from __future__ import annotations

import json
import re
import secrets
import string
from dataclasses import dataclass, field
from typing import Any, Literal

from services.common.model_families import ToolCallFormat

_ID_ALPHABET = string.ascii_letters + string.digits
_MISTRAL_ID = re.compile(r"[A-Za-z0-9]{9}")


@dataclass(frozen=True)
class ToolCall:
    """One function call the model made: its id, the function's name and the arguments as JSON text."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class ParsedText:
    """What a piece of the reply turned out to be: content to stream, and calls now complete."""

    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()


@dataclass(frozen=True)
class ParsedReply:
    """A whole reply: its content (None when it was only calls) and its calls."""

    content: str | None
    tool_calls: tuple[ToolCall, ...]


def new_call_id(tool_format: ToolCallFormat | None = None) -> str:
    """A fresh call id: ``call_`` + 24 alphanumerics; for mistral, 9 alphanumerics."""
    if tool_format == "mistral":
        return "".join(secrets.choice(_ID_ALPHABET) for _ in range(9))
    return "call_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(24))


def parse_reply(tool_format: ToolCallFormat, text: str) -> ParsedReply:
    """The content and calls of a complete reply (the same as streaming it in any chunks)."""
    stream = ToolCallStream(tool_format)
    first, last = stream.push(text), stream.finish()
    content = first.content + last.content
    calls = first.tool_calls + last.tool_calls
    return ParsedReply(content if content or not calls else None, calls)


@dataclass(frozen=True)
class _Tagged:
    """A format whose calls sit in regions opened by ``start`` and closed by ``end``.

    ``end`` None: the region ends where the JSON value after ``start`` ends. ``body`` says
    whether a region holds one call object or an array of them.
    """

    start: str
    end: str | None
    body: Literal["object", "array"]


_TAGGED: dict[str, _Tagged] = {
    "hermes": _Tagged("<tool_call>", "</tool_call>", "object"),
    "mistral": _Tagged("[TOOL_CALLS]", None, "array"),
    "json_block": _Tagged("```tool_call", "```", "object"),
    "phi4": _Tagged("<|tool_call|>", "<|/tool_call|>", "array"),
}
TOOL_CALL_FORMATS: tuple[str, ...] = (*_TAGGED, "llama3_json")


def special_markers(tool_format: ToolCallFormat, tokenizer: Any) -> frozenset[str]:
    """The format's markers that are special tokens of ``tokenizer``: what decoding must keep for the parser.

    Engines decode with special tokens skipped, which would drop Mistral v0.3's
    ``[TOOL_CALLS]`` (a control token) or a hermes model's ``<tool_call>`` where it is special,
    and a call would come back as text. A replica works this out once at start-up and its
    requests with tools have the engine keep exactly these (vLLM's server turns
    ``skip_special_tokens`` off for the same reason). llama3_json has no marker to keep: Llama
    3.1's ``<|python_tag|>`` before a call is special and is better dropped, leaving the JSON.
    """
    spec = _TAGGED.get(tool_format)
    if spec is None:
        return frozenset()
    markers = {spec.start} if spec.end is None else {spec.start, spec.end}
    added = getattr(tokenizer, "added_tokens_decoder", None) or {}
    return frozenset(token.content for token in added.values() if token.special and token.content in markers)


@dataclass
class ToolCallStream:
    """One choice's text in, content and complete tool calls out; see the module docstring.

    Feed every piece of text to :meth:`push`, then call :meth:`finish` once when the choice
    ends. :attr:`called` says whether any call was emitted (the finish reason is then
    ``tool_calls``).
    """

    tool_format: ToolCallFormat
    called: bool = False
    # Text received but neither released as content nor consumed by a call yet.
    _held: str = ""
    # Inside a call region (its start marker consumed and kept in _region_start).
    _in_call: bool = False
    _region_start: str = ""
    # Trailing whitespace of released content, held while a call may follow it.
    _held_whitespace: str = ""
    # Whitespace between content and the region that followed; restored if the region is text.
    _whitespace_before: str = ""
    # The last thing released or emitted was a call: whitespace that follows is dropped.
    _after_call: bool = False
    # llama3_json only: the reply turned out to be content; everything after passes through.
    _plain: bool = False
    _finished: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        if self.tool_format not in TOOL_CALL_FORMATS:
            raise ValueError(f"unknown tool call format {self.tool_format!r}")

    def push(self, text: str) -> ParsedText:
        """Add generated text; return the content it releases and the calls it completes."""
        if self._finished:
            raise RuntimeError("push after finish")
        if self._plain:
            return ParsedText(content=text)
        self._held += text
        if self.tool_format == "llama3_json":
            return self._llama3(final=False)
        return self._tagged(_TAGGED[self.tool_format], final=False)

    def finish(self) -> ParsedText:
        """The choice ended: parse what is held (a last call without its closing marker) or release it."""
        if self._finished:
            raise RuntimeError("finish called twice")
        self._finished = True
        if self._plain:
            return ParsedText()
        if self.tool_format == "llama3_json":
            return self._llama3(final=True)
        return self._tagged(_TAGGED[self.tool_format], final=True)

    # -- the tagged formats --

    def _tagged(self, spec: _Tagged, *, final: bool) -> ParsedText:
        out = _Output()
        while True:
            if not self._in_call:
                start = self._held.find(spec.start)
                if start < 0:
                    keep = 0 if final else _partial_suffix(self._held, spec.start)
                    self._release_text(out, self._held[: len(self._held) - keep], hold_whitespace=not final)
                    self._held = self._held[len(self._held) - keep :]
                    return out.result()
                before = self._held[:start]
                self._release_text(out, before, hold_whitespace=True)
                self._whitespace_before = self._held_whitespace
                self._held_whitespace = ""
                self._held = self._held[start + len(spec.start) :]
                self._in_call, self._region_start = True, spec.start
            region = self._region_end(spec, final=final)
            if region is None:
                return out.result()
            body, close = region
            raw = self._region_start + self._held[:close]
            self._held = self._held[close:]
            self._in_call = False
            calls = _calls_from(_loads(body), spec.body, self.tool_format)
            if calls is None:
                self._release(out, self._whitespace_before + raw)
            else:
                out.calls.extend(calls)
                self.called, self._after_call = True, True
            self._whitespace_before = ""

    def _region_end(self, spec: _Tagged, *, final: bool) -> tuple[str, int] | None:
        """The body of the open region and where the region ends in the held text; None: not yet."""
        if spec.end is not None:
            end = self._held.find(spec.end)
            if end >= 0:
                return self._held[:end], end + len(spec.end)
            if not final:
                return None
            # The reply ended inside the region: the call counts if its JSON is whole.
            partial = _partial_suffix(self._held, spec.end)
            return self._held[: len(self._held) - partial], len(self._held)
        # No closing marker: the region is the JSON value after the start marker.
        offset = len(self._held) - len(self._held.lstrip())
        if offset == len(self._held):
            return ("", len(self._held)) if final else None
        end = _json_value_end(self._held, offset)
        if end is not None:
            return self._held[:end], end
        if self._held[offset] not in "[{":  # cannot open a JSON array or object: this is text
            return self._held, len(self._held)
        return (self._held, len(self._held)) if final else None

    # -- llama3_json --

    def _llama3(self, *, final: bool) -> ParsedText:
        out = _Output()
        while True:
            stripped = self._held.lstrip()
            if not stripped:
                if final:  # only whitespace left: content unless it separates calls
                    if not self.called:
                        self._release(out, self._held)
                    self._held = ""
                return out.result()
            offset = len(self._held) - len(stripped)
            if self.called:
                # after a call: only "; {next call}" may follow
                if stripped[0] != ";":
                    return self._llama3_plain(out, stripped)
                rest = stripped[1:].lstrip()
                if not rest:
                    if final:  # a separator after the last call says nothing
                        self._held = ""
                    return out.result()
                offset = len(self._held) - len(rest)
                stripped = rest
            if stripped[0] != "{" or not _could_open_call(stripped):
                return self._llama3_plain(out, self._held if not self.called else stripped)
            end = _json_value_end(self._held, offset)
            if end is None:
                if final:
                    return self._llama3_plain(out, self._held if not self.called else stripped)
                return out.result()
            calls = _calls_from(_loads(self._held[offset:end]), "object", self.tool_format)
            if calls is None:
                return self._llama3_plain(out, self._held if not self.called else stripped)
            out.calls.extend(calls)
            self.called, self._after_call = True, True
            self._held = self._held[end:]

    def _llama3_plain(self, out: _Output, text: str) -> ParsedText:
        """The rest of the reply is content (llama3_json writes calls only as the whole reply)."""
        self._plain, self._held = True, ""
        self._release(out, text)
        return out.result()

    # -- releasing content --

    def _release_text(self, out: _Output, text: str, *, hold_whitespace: bool) -> None:
        """Release ``text`` as content; its trailing whitespace waits while a call may follow."""
        text = self._held_whitespace + text
        self._held_whitespace = ""
        if self._after_call:
            text = text.lstrip()
            if not text:
                return
        if hold_whitespace:
            body = text.rstrip()
            self._held_whitespace = text[len(body) :]
            text = body
        self._release(out, text)

    def _release(self, out: _Output, text: str) -> None:
        if text:
            out.content.append(text)
            self._after_call = False


@dataclass
class _Output:
    content: list[str] = field(default_factory=list)
    calls: list[ToolCall] = field(default_factory=list)

    def result(self) -> ParsedText:
        return ParsedText("".join(self.content), tuple(self.calls))


def _partial_suffix(text: str, marker: str) -> int:
    """Length of the longest end of ``text`` that ``marker`` starts with (shorter than the marker)."""
    for length in range(min(len(marker) - 1, len(text)), 0, -1):
        if marker.startswith(text[-length:]):
            return length
    return 0


_CALL_OPENING = re.compile(r'\{\s*(?:"|$)')


def _could_open_call(text: str) -> bool:
    """Whether ``text`` (starting with ``{``) may still be the start of a call object."""
    return _CALL_OPENING.match(text) is not None


def _json_value_end(text: str, start: int) -> int | None:
    """Index after the JSON array or object opening at ``text[start]``; None while it is unclosed.

    Brackets are counted outside strings only; whether the value is valid JSON is for
    ``json.loads`` to say.
    """
    depth = 0
    in_string = escaped = False
    for index in range(start, len(text)):
        char = text[index]
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
            if depth == 0:
                return index + 1
        elif depth == 0:
            return None
    return None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _loads(text: str) -> Any:
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except ValueError:
        return _INVALID


_INVALID = object()


def _calls_from(
    value: Any, body: Literal["object", "array"], tool_format: ToolCallFormat
) -> list[ToolCall] | None:
    """The calls a region's JSON holds; None when it is not exactly calls."""
    if value is _INVALID:
        return None
    items = value if body == "array" and isinstance(value, list) else [value]
    if body == "array" and not isinstance(value, (list, dict)):
        return None
    if not items:
        return None
    calls = []
    for item in items:
        call = _call_from(item, tool_format)
        if call is None:
            return None
        calls.append(call)
    return calls


def _call_from(item: Any, tool_format: ToolCallFormat) -> ToolCall | None:
    if not isinstance(item, dict):
        return None
    name = item.get("name")
    arguments = item["arguments"] if "arguments" in item else item.get("parameters")
    if not isinstance(name, str) or not name or not isinstance(arguments, dict):
        return None
    written_id = item.get("id")
    if tool_format == "mistral" and isinstance(written_id, str) and _MISTRAL_ID.fullmatch(written_id):
        call_id = written_id
    else:
        call_id = new_call_id(tool_format)
    return ToolCall(call_id, name, json.dumps(arguments, ensure_ascii=False))
