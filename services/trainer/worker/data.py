"""Training data: a file's examples rendered into token sequences with the positions the loss is taken on.

What a valid line is, and the typed example it becomes, is defined once for the dataset service and
the worker in :mod:`services.common.training_format` (docs/research/openai_api.md §4). Each example is read,
checked and tokenized in one pass over the downloaded file:

- **chat** (:class:`ChatExample`): rendered with the base model's chat template; the loss is on the
  tokens the template marks with ``{% generation %}`` (an assistant's content, its tool calls and its
  end-of-turn token), except assistant messages with ``"weight": 0``;
- **prompt/completion** (:class:`PromptCompletionExample`): plain text; the loss is on the completion
  and the end-of-sequence token after it, so the model learns to stop;
- **preference** (:class:`PreferenceExample`, DPO): two sequences sharing the prompt, each trained on
  its final assistant message only.

Each example becomes one or two :class:`TokenizedSequence`: ``input_ids`` and ``labels``, where
``labels[i]`` is ``input_ids[i]`` when the model is trained to produce that token and
:data:`IGNORE_INDEX` otherwise (the Hugging Face convention; :mod:`.packing` shifts them).
Token counts come from the base model's own tokenizer, so they are the model's. An example
longer than the model's context window (its ``max_position_embeddings``) cannot be trained on
as written: the file fails as a whole, naming the first :data:`LINES_NAMED` such lines with
their token counts and how many more there are. Sequences longer than the job's max length
(within the context) lose tokens from the end, as OpenAI truncates, and the lines are kept
the same way (:attr:`ExampleSet.truncated_lines`) so the job can name them in a warning; an
example left with nothing to train on (its first assistant token lies beyond the max length)
is skipped and counted too, as TRL drops it. A line
that cannot be trained on (invalid, of a format the job's method does not train on, or one the
chat template cannot render) fails the job with ``invalid_training_file`` (or
``invalid_validation_file``) naming the line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import PreTrainedTokenizerBase

from services.common.training_format import (
    NO_EXAMPLES,
    ChatExample,
    ExampleFormat,
    ExampleReader,
    InvalidExample,
    Message,
    PreferenceExample,
    PromptCompletionExample,
    TrainingExample,
)
from services.trainer.worker.failures import invalid_file

IGNORE_INDEX = -100
# How many lines a message about long examples names; the rest are counted.
LINES_NAMED = 20


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
class LongLine:
    """A line whose example is longer than a limit: its longest sequence's tokens."""

    line: int
    tokens: int


def name_lines(lines: Sequence[LongLine], total: int) -> str:
    """``line 4: 2210 tokens, line 9: 3001 tokens and 3 more`` for the first lines of ``total``."""
    named = ", ".join(f"line {long.line}: {long.tokens} tokens" for long in lines)
    more = total - len(lines)
    return f"{named} and {more} more" if more > 0 else named


@dataclass(frozen=True)
class ExampleSet:
    """A file's examples, ready to train on."""

    examples: list[Example]
    format: ExampleFormat
    max_length: int
    truncated_examples: int  # examples cut to max_length (and kept)
    skipped_examples: int = 0  # examples with no trained token left after truncation
    truncated_lines: tuple[LongLine, ...] = ()  # the first LINES_NAMED truncated or skipped ones

    def __len__(self) -> int:
        return len(self.examples)

    @property
    def num_tokens(self) -> int:
        """Input tokens over all examples after truncation (one epoch's billable tokens)."""
        return sum(example.num_tokens for example in self.examples)


class UntrainableExample(Exception):
    """A valid example that cannot be trained on with this tokenizer; the message says why."""


def load_examples(
    path: Path,
    tokenizer: PreTrainedTokenizerBase,
    *,
    preference: bool,
    max_length: int,
    file_param: str,
    context_length: int | None = None,
) -> ExampleSet:
    """Read a JSONL file into tokenized examples, truncated to ``max_length`` tokens, in one pass.

    ``preference`` selects what a DPO job needs (preference pairs) over what a supervised job
    needs (chat or prompt/completion examples). ``file_param`` names the job field the file came
    from (``training_file`` or ``validation_file``) in the :class:`JobFailure` raised for a bad line.
    ``context_length`` is the model's context window: a longer example fails the file, after
    the whole file is read, naming the lines (see the module docstring).
    """
    reader = ExampleReader(on_first_example=lambda found: _check_method_fits(found, preference=preference))
    examples: list[Example] = []
    truncated = skipped = over_context = 0
    truncated_lines: list[LongLine] = []
    over_context_lines: list[LongLine] = []
    with path.open("rb") as file:
        for raw in file:
            try:
                example = reader.read_example_bytes(raw.removesuffix(b"\n"))
                if example is None:
                    continue
                sequences = tokenize_example(example, tokenizer)
            except (InvalidExample, UntrainableExample) as problem:
                raise invalid_file(file_param, reader.line, str(problem)) from None
            longest = max(len(sequence) for sequence in sequences)
            if context_length is not None and longest > context_length:
                over_context += 1
                if len(over_context_lines) < LINES_NAMED:
                    over_context_lines.append(LongLine(reader.line, longest))
                continue
            if longest > max_length:
                if len(truncated_lines) < LINES_NAMED:
                    truncated_lines.append(LongLine(reader.line, longest))
                sequences = tuple(sequence.truncated(max_length) for sequence in sequences)
                if not all(sequence.num_trained_tokens for sequence in sequences):
                    skipped += 1
                    continue
                truncated += 1
            examples.append(Example(reader.line, sequences))

    if reader.anchor is None:
        raise invalid_file(file_param, 0, NO_EXAMPLES.message)
    if over_context:
        many = "examples are" if over_context > 1 else "example is"
        raise invalid_file(
            file_param,
            0,
            f"{over_context} {many} longer than the model's context of {context_length} tokens "
            f"({name_lines(over_context_lines, over_context)}); shorten or split them.",
        )
    if not examples:
        raise invalid_file(
            file_param,
            0,
            f"no assistant tokens are left to train on after truncation to {max_length} tokens.",
        )
    return ExampleSet(examples, reader.anchor.format, max_length, truncated, skipped, tuple(truncated_lines))


def _check_method_fits(found: ExampleFormat, *, preference: bool) -> None:
    """Refuse a file whose format the job's method does not train on (its first example tells)."""
    if preference and found is not ExampleFormat.PREFERENCE:
        raise InvalidExample(
            "wrong_format_for_method",
            "a DPO job needs preference examples (`input`, `preferred_output`, `non_preferred_output`); "
            f"this is a {found.label} example.",
        )
    if not preference and found is ExampleFormat.PREFERENCE:
        raise InvalidExample(
            "wrong_format_for_method", "a preference example needs a DPO job (method type `dpo`)."
        )


def tokenize_example(
    example: TrainingExample, tokenizer: PreTrainedTokenizerBase
) -> tuple[TokenizedSequence, ...]:
    """The sequences of one example (untruncated); raises UntrainableExample when it cannot be rendered."""
    if isinstance(example, ChatExample):
        return (_render_chat(example.messages, example.tools, tokenizer, weights=example.assistant_weights),)
    if isinstance(example, PromptCompletionExample):
        prompt_ids = tokenizer(example.prompt, add_special_tokens=True)["input_ids"]
        completion_ids = tokenizer(example.completion, add_special_tokens=False)["input_ids"]
        if tokenizer.eos_token_id is not None:
            completion_ids = [*completion_ids, tokenizer.eos_token_id]
        return (
            TokenizedSequence(
                [*prompt_ids, *completion_ids], [IGNORE_INDEX] * len(prompt_ids) + completion_ids
            ),
        )
    assert isinstance(example, PreferenceExample)
    return tuple(
        _render_chat(conversation, example.tools, tokenizer, weights=None)
        for conversation in example.conversations()
    )


def _render_chat(
    messages: list[Message],
    tools: list[dict[str, Any]] | None,
    tokenizer: PreTrainedTokenizerBase,
    *,
    weights: list[int | float] | None,
) -> TokenizedSequence:
    """Tokens of a conversation, trained on its weighted assistant messages (None: on its final reply)."""
    try:
        rendered = tokenizer.apply_chat_template(
            messages, tools=tools, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
        )
    except Exception as error:  # jinja2 errors, raise_exception() in the template, bad types
        raise UntrainableExample(f"the chat template cannot render it: {error}") from None
    input_ids = list(rendered["input_ids"])
    spans = _assistant_spans(rendered["assistant_masks"])
    trained = spans[-1:] if weights is None else _spans_with_weight(spans, weights)
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
    raise UntrainableExample(
        f"the chat template marked {len(spans)} assistant spans for {len(weights)} assistant messages; "
        "the trained tokens cannot be told apart."
    )
