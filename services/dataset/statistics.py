"""Token counts of a fine-tuning file under one base model's tokenizer and chat template.

Counted on request (``GetFileStatistics`` with a base model), by streaming the stored file
again: the figures depend on the base model, which upload does not know. Each line is read
with :mod:`services.common.training_format`'s reader, as the worker reads it, and each example
rendered the way training sees it:

* chat: the messages (and tools) through the model's chat template;
* preference: the input messages followed by the preferred output, and again followed by
  the non-preferred output; both sequences count towards the total, the longer one
  towards the example's length;
* prompt/completion: the prompt followed by the completion, as plain text.

The tokenizer is loaded with transformers' ``AutoTokenizer`` from where
:func:`~services.common.base_models.resolve_base_model` says the model is; torch is not
needed, except to build the built-in model the first time (the dataset image has none).
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.common.base_models import resolve_base_model
from services.common.errors import FailedPrecondition, InvalidArgument
from services.common.settings import CommonSettings
from services.common.tailor_tiny import is_built
from services.common.training_format import (
    ChatExample,
    ExampleFormat,
    ExampleReader,
    InvalidExample,
    Message,
    PreferenceExample,
    PromptCompletionExample,
    TrainingExample,
)


@dataclass(frozen=True)
class TokenStatistics:
    """Token counts of one file under one base model."""

    base_model: str
    total_tokens: int
    max_example_tokens: int
    examples_over_max_length: int


class _LoadedTokenizer:
    """A tokenizer, the longest sequence its model trains on, and a lock: one encode at a time.

    Fast tokenizers refuse concurrent use from several threads ("Already borrowed").
    """

    def __init__(self, name: str, tokenizer: Any, max_length: int) -> None:
        self.name = name
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.lock = threading.Lock()


class TokenCounter:
    """Counts a file's tokens for a base model; tokenizers are loaded once and kept."""

    def __init__(self, settings: CommonSettings) -> None:
        self._settings = settings
        self._loaded: dict[str, _LoadedTokenizer] = {}
        self._loading = asyncio.Lock()

    async def count(
        self, base_model: str, example_format: ExampleFormat, content: AsyncIterator[bytes]
    ) -> TokenStatistics:
        """Stream a valid file's ``content`` and count its tokens under ``base_model``."""
        loaded = await self._tokenizer(base_model)
        tally = _Tally(loaded, example_format)
        async for lines in _complete_lines(content):
            # Rendering and encoding are CPU work: off the event loop, a chunk's lines at a time.
            await asyncio.to_thread(tally.add, lines)
        return TokenStatistics(base_model, tally.total, tally.longest, tally.over_max_length)

    async def _tokenizer(self, base_model: str) -> _LoadedTokenizer:
        async with self._loading:
            if base_model not in self._loaded:
                self._loaded[base_model] = await asyncio.to_thread(self._load, base_model)
            return self._loaded[base_model]

    def _load(self, base_model: str) -> _LoadedTokenizer:
        try:
            resolved = resolve_base_model(base_model, self._settings, build=False)
        except InvalidArgument as error:
            raise InvalidArgument(error.message, param="base_model", code=error.code) from error
        if resolved.spec.is_builtin and not is_built(Path(resolved.location)):
            if not torch_available():
                raise FailedPrecondition(
                    f"Base model `{base_model}` has not been built yet, and building it needs torch, "
                    "which the dataset service does not have. It is built by the trainer or inference "
                    "service on first use (or with `python -m services.common.tailor_tiny`) in the "
                    "shared data directory; ask again once it exists.",
                    param="base_model",
                )
            resolved = resolve_base_model(base_model, self._settings)
        try:
            from transformers import AutoTokenizer
        except ImportError as error:
            raise FailedPrecondition(
                "token counts need the transformers package, which this dataset service lacks",
                param="base_model",
            ) from error
        try:
            tokenizer = AutoTokenizer.from_pretrained(resolved.location, revision=resolved.revision)
        except (OSError, ValueError) as error:
            raise FailedPrecondition(
                f"could not load the tokenizer of base model `{base_model}` from {resolved.location}: {error}",
                param="base_model",
            ) from error
        if resolved.spec.chat_template:
            tokenizer.chat_template = resolved.spec.chat_template
        return _LoadedTokenizer(base_model, tokenizer, resolved.max_seq_length)


def torch_available() -> bool:
    """Whether torch can be imported here (the dataset image has none; development installs do)."""
    return importlib.util.find_spec("torch") is not None


class _Tally:
    """Running token counts of one file, read line by line in order."""

    def __init__(self, loaded: _LoadedTokenizer, example_format: ExampleFormat) -> None:
        self.loaded = loaded
        self.format = example_format
        self.reader = ExampleReader()
        self.total = 0
        self.longest = 0
        self.over_max_length = 0

    def add(self, lines: list[bytes]) -> None:
        """Count the examples on ``lines``, the file's next lines (the reader numbers them)."""
        texts: list[str] = []
        sequences_per_example: list[int] = []
        for line in lines:
            example = self._read(line)
            if example is None:
                continue
            rendered = self._render(example)
            texts.extend(rendered)
            sequences_per_example.append(len(rendered))
        if not texts:
            return
        # Chat templates write their special tokens themselves; plain text gets the tokenizer's.
        add_special_tokens = self.format is ExampleFormat.PROMPT_COMPLETION
        with self.loaded.lock:
            encoded = self.loaded.tokenizer(texts, add_special_tokens=add_special_tokens)["input_ids"]
        lengths = iter(len(ids) for ids in encoded)
        for sequences in sequences_per_example:
            example_lengths = [next(lengths) for _ in range(sequences)]
            self.total += sum(example_lengths)
            longest = max(example_lengths)
            self.longest = max(self.longest, longest)
            if longest > self.loaded.max_length:
                self.over_max_length += 1

    def _read(self, line: bytes) -> TrainingExample | None:
        try:
            return self.reader.read_example_bytes(line)
        except InvalidExample as invalid:
            # The file was valid when it was stored; the format's rules may have tightened since.
            raise FailedPrecondition(
                f"line {self.reader.line} of the file is no longer a valid example: {invalid.message}",
                param="file_id",
            ) from None

    def _render(self, example: TrainingExample) -> list[str]:
        if isinstance(example, PromptCompletionExample):
            return [example.prompt + example.completion]
        if isinstance(example, ChatExample):
            return [self._chat(example.messages, example.tools)]
        assert isinstance(example, PreferenceExample)
        return [self._chat(conversation, example.tools) for conversation in example.conversations()]

    def _chat(self, messages: list[Message], tools: list[dict[str, Any]] | None) -> str:
        from jinja2 import TemplateError

        try:
            return self.loaded.tokenizer.apply_chat_template(messages, tools=tools, tokenize=False)
        except (TemplateError, ValueError) as error:
            raise FailedPrecondition(
                f"the chat template of base model `{self.loaded.name}` cannot render line "
                f"{self.reader.line}: {error}",
                param="base_model",
            ) from error


async def _complete_lines(content: AsyncIterator[bytes]) -> AsyncIterator[list[bytes]]:
    """The content's lines (without their newlines), a chunk's worth at a time."""
    partial = b""
    async for chunk in content:
        lines = (partial + chunk).split(b"\n")
        partial = lines.pop()
        if lines:
            yield lines
    if partial:
        yield [partial]
