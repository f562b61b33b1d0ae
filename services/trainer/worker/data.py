"""Training data: JSONL examples rendered into token sequences with the positions the loss is taken on.

Three example formats (openai_api.md §4), one per file:

- **chat** ``{"messages": [...], "tools"?: [...]}``: rendered with the base model's chat template;
  the loss is on the tokens the template marks with ``{% generation %}`` (an assistant's content,
  its tool calls and its end-of-turn token), except assistant messages with ``"weight": 0``;
- **prompt/completion** ``{"prompt": "...", "completion": "..."}``: plain text; the loss is on the
  completion and the end-of-sequence token after it, so the model learns to stop;
- **preference** ``{"input": {"messages": [...]}, "preferred_output": [msg], "non_preferred_output": [msg]}``
  (DPO): two sequences sharing the prompt, each trained on its final assistant message only.

Each example becomes one or two :class:`TokenizedSequence`: ``input_ids`` and ``labels``, where
``labels[i]`` is ``input_ids[i]`` when the model is trained to produce that token and
:data:`IGNORE_INDEX` otherwise (the Hugging Face convention; :mod:`.packing` shifts them).
Sequences longer than the max length lose tokens from the end, as OpenAI truncates, and are
counted so the job can say how many; an example left with nothing to train on (its first
assistant token lies beyond the max length) is skipped and counted too, as TRL drops it. A line
that cannot be trained on fails the job with ``invalid_training_file`` (or
``invalid_validation_file``) naming the line.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import PreTrainedTokenizerBase

from services.trainer.worker.failures import invalid_file

IGNORE_INDEX = -100

CHAT_ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
MESSAGE_KEYS = frozenset({"role", "content", "name", "weight", "tool_calls", "tool_call_id", "function_call"})


class ExampleFormat(enum.StrEnum):
    """The shape of the examples in a file."""

    CHAT = "chat"
    PROMPT_COMPLETION = "prompt/completion"
    PREFERENCE = "preference"


@dataclass(frozen=True)
class TokenizedSequence:
    """One sequence the model reads, and which of its tokens the loss is taken on."""

    input_ids: list[int]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def num_trained_tokens(self) -> int:
        """How many tokens the model is trained to produce."""
        return sum(label != IGNORE_INDEX for label in self.labels)

    def truncated(self, max_length: int) -> TokenizedSequence:
        """The first ``max_length`` tokens (OpenAI truncates long examples from the end)."""
        return TokenizedSequence(self.input_ids[:max_length], self.labels[:max_length])


@dataclass(frozen=True)
class Example:
    """One line of a file: one sequence, or for DPO the (preferred, non-preferred) pair."""

    line: int
    sequences: tuple[TokenizedSequence, ...]

    @property
    def num_tokens(self) -> int:
        """Input tokens of all its sequences: what the model reads for it, and what is billed."""
        return sum(len(sequence) for sequence in self.sequences)


@dataclass(frozen=True)
class ExampleSet:
    """A file's examples, ready to train on."""

    examples: list[Example]
    format: ExampleFormat
    max_length: int
    truncated_examples: int  # examples cut to max_length (and kept)
    skipped_examples: int = 0  # examples with no trained token left after truncation

    def __len__(self) -> int:
        return len(self.examples)

    @property
    def num_tokens(self) -> int:
        """Input tokens over all examples after truncation (one epoch's billable tokens)."""
        return sum(example.num_tokens for example in self.examples)


class _BadExample(Exception):
    """A line that cannot be trained on; the message says why, without the line number."""


def load_examples(
    path: Path,
    tokenizer: PreTrainedTokenizerBase,
    *,
    preference: bool,
    max_length: int,
    file_param: str,
) -> ExampleSet:
    """Read a JSONL file into tokenized examples, truncated to ``max_length`` tokens.

    ``preference`` selects what a DPO job needs (preference pairs) over what a supervised job
    needs (chat or prompt/completion examples). ``file_param`` names the job field the file came
    from (``training_file`` or ``validation_file``) in the :class:`JobFailure` raised for a bad line.
    """
    examples: list[Example] = []
    file_format: ExampleFormat | None = None
    truncated = skipped = 0
    for line_number, record in _json_lines(path, file_param):
        try:
            example_format = detect_format(record)
            _check_format_fits(example_format, preference=preference, file_format=file_format)
            sequences = tokenize_record(record, example_format, tokenizer)
        except _BadExample as problem:
            raise invalid_file(file_param, line_number, str(problem)) from None
        file_format = example_format
        if any(len(sequence) > max_length for sequence in sequences):
            sequences = tuple(sequence.truncated(max_length) for sequence in sequences)
            if not all(sequence.num_trained_tokens for sequence in sequences):
                skipped += 1
                continue
            truncated += 1
        examples.append(Example(line_number, sequences))

    if file_format is None:
        raise invalid_file(file_param, 0, "it holds no examples.")
    if not examples:
        raise invalid_file(
            file_param,
            0,
            f"no assistant tokens are left to train on after truncation to {max_length} tokens.",
        )
    return ExampleSet(examples, file_format, max_length, truncated, skipped)


def _json_lines(path: Path, file_param: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """The file's non-empty lines as JSON objects, with their 1-based line numbers."""
    with path.open("rb") as file:
        for line_number, raw in enumerate(file, start=1):
            try:
                # utf-8-sig on line 1: the dataset service accepts a file that starts with a
                # byte-order mark, so training must read it too.
                text = raw.decode("utf-8-sig" if line_number == 1 else "utf-8")
            except UnicodeDecodeError:
                raise invalid_file(file_param, line_number, "it is not UTF-8 text.") from None
            if not text.strip():
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as error:
                reason = f"it is not valid JSON ({error.msg} at column {error.colno})."
                raise invalid_file(file_param, line_number, reason) from None
            if not isinstance(record, dict):
                raise invalid_file(file_param, line_number, "each line must be a JSON object.")
            yield line_number, record


def detect_format(record: Mapping[str, Any]) -> ExampleFormat:
    """Which format a line is in, judged by its keys."""
    if "messages" in record:
        return ExampleFormat.CHAT
    if "input" in record and ("preferred_output" in record or "preferred_completion" in record):
        return ExampleFormat.PREFERENCE
    if "prompt" in record and "completion" in record:
        return ExampleFormat.PROMPT_COMPLETION
    raise _BadExample(
        "expected a chat example (`messages`), a prompt/completion example (`prompt`, `completion`) "
        "or a preference example (`input`, `preferred_output`, `non_preferred_output`)."
    )


def _check_format_fits(
    example_format: ExampleFormat, *, preference: bool, file_format: ExampleFormat | None
) -> None:
    if preference and example_format is not ExampleFormat.PREFERENCE:
        raise _BadExample(
            f"a DPO job needs preference examples (`input`, `preferred_output`, `non_preferred_output`); "
            f"this is a {example_format} example."
        )
    if not preference and example_format is ExampleFormat.PREFERENCE:
        raise _BadExample("a preference example needs a DPO job (method type `dpo`).")
    if file_format is not None and example_format is not file_format:
        raise _BadExample(
            f"it is a {example_format} example, but the lines before are {file_format} examples."
        )


def tokenize_record(
    record: Mapping[str, Any], example_format: ExampleFormat, tokenizer: PreTrainedTokenizerBase
) -> tuple[TokenizedSequence, ...]:
    """The sequences of one example (untruncated); raises _BadExample for an invalid one."""
    if example_format is ExampleFormat.CHAT:
        messages = _checked_messages(record["messages"], "messages")
        if not any(m["role"] == "assistant" and m.get("weight", 1) != 0 for m in messages):
            raise _BadExample("it has no assistant message to train on (one without `weight: 0`).")
        return (
            _render_chat(messages, _checked_tools(record.get("tools")), tokenizer, final_reply_only=False),
        )

    if example_format is ExampleFormat.PROMPT_COMPLETION:
        prompt, completion = record["prompt"], record["completion"]
        if not isinstance(prompt, str) or not isinstance(completion, str):
            raise _BadExample("`prompt` and `completion` must be strings.")
        prompt_ids = tokenizer(prompt, add_special_tokens=True)["input_ids"]
        completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
        if tokenizer.eos_token_id is not None:
            completion_ids = [*completion_ids, tokenizer.eos_token_id]
        return (
            TokenizedSequence(
                [*prompt_ids, *completion_ids], [IGNORE_INDEX] * len(prompt_ids) + completion_ids
            ),
        )

    conversation = record["input"]
    if not isinstance(conversation, dict):
        raise _BadExample("`input` must be an object with `messages`.")
    prompt_messages = _checked_messages(conversation.get("messages"), "input.messages")
    tools = _checked_tools(conversation.get("tools"))
    pair = []
    for key in ("preferred_output", "non_preferred_output"):
        output = record.get(key, record.get(key.replace("_output", "_completion")))
        reply = _checked_messages(output, key)
        if len(reply) != 1 or reply[0]["role"] != "assistant":
            raise _BadExample(f"`{key}` must be a list of exactly one assistant message.")
        pair.append(_render_chat([*prompt_messages, *reply], tools, tokenizer, final_reply_only=True))
    return tuple(pair)


def _render_chat(
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None,
    tokenizer: PreTrainedTokenizerBase,
    *,
    final_reply_only: bool,
) -> TokenizedSequence:
    try:
        rendered = tokenizer.apply_chat_template(
            messages, tools=tools, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
        )
    except Exception as error:  # jinja2 errors, raise_exception() in the template, bad types
        raise _BadExample(f"the chat template cannot render it: {error}") from None
    input_ids = list(rendered["input_ids"])
    spans = _assistant_spans(rendered["assistant_masks"])
    if final_reply_only:
        trained = spans[-1:]
    else:
        trained = _spans_with_weight(
            spans, [m.get("weight", 1) for m in messages if m["role"] == "assistant"]
        )
    labels = [IGNORE_INDEX] * len(input_ids)
    for start, end in trained:
        labels[start:end] = input_ids[start:end]
    return TokenizedSequence(input_ids, labels)


def _assistant_spans(mask: Sequence[int]) -> list[tuple[int, int]]:
    """The [start, end) runs of 1s in an assistant mask, one per rendered generation block."""
    spans, start = [], None
    for index, flag in enumerate([*mask, 0]):
        if flag and start is None:
            start = index
        elif not flag and start is not None:
            spans.append((start, index))
            start = None
    return spans


def _spans_with_weight(spans: list[tuple[int, int]], weights: list[Any]) -> list[tuple[int, int]]:
    """The spans of assistant messages with a non-zero weight.

    tailor-tiny's template already leaves weight-0 messages out of its generation blocks; other
    templates mark every assistant message. Both are recognised by counting spans.
    """
    if len(spans) == len(weights):
        return [span for span, weight in zip(spans, weights, strict=True) if weight != 0]
    if len(spans) == sum(weight != 0 for weight in weights):
        return spans
    raise _BadExample(
        f"the chat template marked {len(spans)} assistant spans for {len(weights)} assistant messages; "
        "the trained tokens cannot be told apart."
    )


def _checked_messages(messages: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(messages, list) or not messages:
        raise _BadExample(f"`{where}` must be a non-empty list of messages.")
    for index, message in enumerate(messages):
        at = f"`{where}[{index}]`"
        if not isinstance(message, dict):
            raise _BadExample(f"{at} must be an object.")
        unknown = set(message) - MESSAGE_KEYS
        if unknown:
            raise _BadExample(f"{at} has unrecognised keys: {', '.join(sorted(unknown))}.")
        role = message.get("role")
        if role not in CHAT_ROLES:
            raise _BadExample(f"{at} has role {role!r}; expected one of {', '.join(sorted(CHAT_ROLES))}.")
        _check_content(
            message.get("content"), at, may_be_empty=role == "assistant" and "tool_calls" in message
        )
        if "weight" in message and (role != "assistant" or message["weight"] not in (0, 1)):
            raise _BadExample(f"{at}: `weight` is allowed on assistant messages only, and must be 0 or 1.")
        if "tool_calls" in message:
            _check_tool_calls(message["tool_calls"], at)
    return messages


def _check_content(content: Any, at: str, *, may_be_empty: bool) -> None:
    if content is None:
        if not may_be_empty:
            raise _BadExample(f"{at} has no `content`.")
        return
    if isinstance(content, str):
        return
    if isinstance(content, list) and all(
        isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)
        for part in content
    ):
        return
    raise _BadExample(f"{at}: `content` must be a string or a list of text parts (images are not supported).")


def _check_tool_calls(tool_calls: Any, at: str) -> None:
    if not isinstance(tool_calls, list):
        raise _BadExample(f"{at}: `tool_calls` must be a list.")
    for call in tool_calls:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise _BadExample(f"{at}: each tool call needs a `function` with a `name`.")
        if not isinstance(function.get("arguments"), (str, dict)):
            raise _BadExample(f"{at}: a tool call's `arguments` must be a JSON string.")


def _checked_tools(tools: Any) -> list[dict[str, Any]] | None:
    if tools is None or tools == []:
        return None
    if not isinstance(tools, list) or not all(isinstance(tool, dict) for tool in tools):
        raise _BadExample("`tools` must be a list of tool definitions.")
    return tools
