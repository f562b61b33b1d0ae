"""Tailor's training file format: the one definition of a valid fine-tuning example.

Everything that reads a training file reads it through this package, so a file the dataset
service accepts at upload is one the worker trains on, line for line: the upload validator
(:mod:`services.dataset.validation`), the token counter (:mod:`services.dataset.statistics`)
and the worker's loader (:mod:`services.trainer.worker.data`). Its reader imports nothing but the
standard library: the dataset service has no torch.

* :class:`ExampleReader` (:mod:`.lines`) reads a file's lines in order and checks each;
* :mod:`.batches` (the dataset service's; it needs msgspec) takes whole blocks of lines at once
  when all are plain valid examples, and otherwise leaves them to the reader;
* :mod:`.rules` and :mod:`.tools` hold the checks of each format;
* :mod:`.examples` the typed examples a valid line becomes (:func:`build_example`);
* :mod:`.problems` the :class:`Problem` a line fails with, and its wording.

What a valid file is (OpenAI's documented rules: the fine-tuning guide, its API spec, and the
cookbook's ``Chat_finetuning_data_prep`` checks; see docs/research/openai_api.md §4):

* UTF-8 JSONL; a byte order mark at the start of the file (only there) is tolerated;
  JSON escapes of half a UTF-16 surrogate pair are refused (they are no character);
* blank (empty or whitespace-only) lines are skipped, not refused: editors and ``cat``
  leave them at the end of files. They still count in line numbers, so every line number
  is the one an editor shows;
* each other line one JSON object, an example in one of three formats, the same for the
  whole file (the first example sets it):

  - chat: ``{"messages": [...], "tools"?: [...], "parallel_tool_calls"?: bool}``
    (deprecated ``functions`` too); roles system, developer, user, assistant, tool and the
    deprecated function; at least one assistant message, trained unless ``weight`` is 0
    (``weight`` is 0 or 1, on assistant messages only); an assistant message has content,
    ``tool_calls`` or a deprecated ``function_call``; text content only (a string or text
    parts), since Tailor's base models read text;
  - prompt/completion: ``{"prompt": "...", "completion": "..."}``, the completion not empty;
  - preference (DPO): ``{"input": {"messages": [...], "tools"?, "parallel_tool_calls"?},
    "preferred_output": [message], "non_preferred_output": [message]}``, or the 2025 spec's
    ``preferred_completion`` / ``non_preferred_completion`` names; the input ends with a
    user message and each output is exactly one assistant message (OpenAI trains on
    one-turn preferences; its spec says ``maxItems: 1``), without ``weight``.

Keys a format does not define are refused rather than ignored, so a typo such as
``"mesages"`` or ``"wieght"`` is caught at upload instead of silently changing what trains.
Each line fails with at most one problem (its first). How many examples a training file
needs is not a rule of the format: upload cannot know what a file will be used for (the
trainer checks it when a job starts), and how long an example may be depends on the base
model (the worker truncates, as OpenAI does).
"""

from services.common.training_format.examples import (
    ChatExample,
    ExampleFormat,
    Message,
    PreferenceExample,
    PromptCompletionExample,
    TrainingExample,
    build_example,
)
from services.common.training_format.lines import (
    BYTE_ORDER_MARK,
    ExampleReader,
    FormatAnchor,
    may_escape_surrogates,
)
from services.common.training_format.problems import NO_EXAMPLES, InvalidExample, Problem

__all__ = [
    "BYTE_ORDER_MARK",
    "NO_EXAMPLES",
    "ChatExample",
    "ExampleFormat",
    "ExampleReader",
    "FormatAnchor",
    "InvalidExample",
    "Message",
    "PreferenceExample",
    "Problem",
    "PromptCompletionExample",
    "TrainingExample",
    "build_example",
    "may_escape_surrogates",
]
