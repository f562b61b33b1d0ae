"""Per family, the worker trains on exactly what the model generates: assistant text, tool calls, end of turn.

Chat examples go through the worker's own data path (:func:`load_examples` with the tokenizer of
:func:`load_tokenizer`) for each tiny model of a real family. The tokens whose labels are
trained are decoded, run by run, and compared with what each assistant message becomes in the
family's format, followed by the family's end-of-turn token: exactly, in multi-turn
conversations, with tool calls, and with a ``weight: 0`` message left out.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from services.common.tiny_models import TINY_MODELS
from services.trainer.worker.data import IGNORE_INDEX, load_examples
from services.trainer.worker.models import load_tokenizer

NAMES = sorted(TINY_MODELS)
END_OF_TURN = {
    "tiny-llama3": "<|eot_id|>",
    "tiny-qwen2.5": "<|im_end|>",
    "tiny-mistral": "</s>",
    "tiny-gemma2": "<end_of_turn>",
    "tiny-phi3": "<|end|>",
}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather in a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]
ARGUMENTS = '{"city": "Lisbon", "days": 2}'
# The assistant's tool-call message (two calls) as each family writes it, before its end-of-turn token.
TOOL_CALLS_WRITTEN = {
    "tiny-llama3": (
        '{"name": "get_weather", "parameters": ' + ARGUMENTS + '}; {"name": "get_weather", "parameters": {}}'
    ),
    "tiny-qwen2.5": (
        "Checking.\n<tool_call>\n"
        '{"name": "get_weather", "arguments": ' + ARGUMENTS + "}\n</tool_call>\n<tool_call>\n"
        '{"name": "get_weather", "arguments": {}}\n</tool_call>'
    ),
    # v0.3 wants 9-alphanumeric ids: OpenAI's call_1 becomes 0000call1.
    "tiny-mistral": (
        '[TOOL_CALLS] [{"name": "get_weather", "arguments": ' + ARGUMENTS + ', "id": "0000call1"}, '
        '{"name": "get_weather", "arguments": {}, "id": "0000call2"}]'
    ),
    "tiny-gemma2": (
        "Checking.\n```tool_call\n"
        '{"name": "get_weather", "arguments": ' + ARGUMENTS + '}\n```\n```tool_call\n'
        '{"name": "get_weather", "arguments": {}}\n```'
    ),
    "tiny-phi3": (
        "Checking.<|tool_call|>["
        '{"name": "get_weather", "arguments": ' + ARGUMENTS + '}, {"name": "get_weather", "arguments": {}}'
        "]<|/tool_call|>"
    ),
}

MULTI_TURN = {
    "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Name a colour."},
        {"role": "assistant", "content": "Teal."},
        {"role": "user", "content": [{"type": "text", "text": "Another, "}, {"type": "text", "text": "please."}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Ochre, with a hint of\nrust."}]},
    ]
}
WITH_WEIGHT_0 = {
    "messages": [
        {"role": "developer", "content": "Count."},
        {"role": "user", "content": "One?"},
        {"role": "assistant", "content": "Two, wrongly.", "weight": 0},
        {"role": "user", "content": "Again?"},
        {"role": "assistant", "content": "Two.", "weight": 1},
        {"role": "user", "content": "And?"},
        {"role": "assistant", "content": "Three!"},
    ]
}
WITH_TOOLS = {
    "messages": [
        {"role": "user", "content": "Weather in Lisbon, twice?"},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ARGUMENTS}},
                {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}},
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "21 C"},
        {"role": "tool", "tool_call_id": "call_2", "content": "19 C"},
        {"role": "assistant", "content": "21 then 19."},
    ],
    "tools": TOOLS,
}


def text_reply(name: str, text: str) -> str:
    """An assistant's text message as the family writes it, with its end-of-turn token."""
    if name == "tiny-mistral":
        return " " + text.strip() + END_OF_TURN[name]  # v0.3: a space after [/INST], then the text
    if name in ("tiny-llama3", "tiny-gemma2"):
        return text.strip() + END_OF_TURN[name]  # their templates trim message text
    return text + END_OF_TURN[name]


EXAMPLES: list[tuple[dict[str, Any], Any]] = [
    (MULTI_TURN, lambda name: [text_reply(name, "Teal."), text_reply(name, "Ochre, with a hint of\nrust.")]),
    (WITH_WEIGHT_0, lambda name: [text_reply(name, "Two."), text_reply(name, "Three!")]),
    (
        WITH_TOOLS,
        lambda name: [TOOL_CALLS_WRITTEN[name] + END_OF_TURN[name], text_reply(name, "21 then 19.")],
    ),
]


@pytest.fixture(scope="module")
def family_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.getbasetemp() / "worker-models"
    return {name: model.ensure(root) for name, model in TINY_MODELS.items()}


def trained_runs(input_ids: list[int], labels: list[int]) -> list[list[int]]:
    """The runs of consecutive trained tokens."""
    runs: list[list[int]] = []
    previous_trained = False
    for token, label in zip(input_ids, labels, strict=True):
        trained = label != IGNORE_INDEX
        if trained:
            assert label == token
            if not previous_trained:
                runs.append([])
            runs[-1].append(token)
        previous_trained = trained
    return runs


@pytest.mark.parametrize("name", NAMES)
def test_trained_tokens_are_exactly_the_assistant_replies(
    name: str, family_dirs: dict[str, Path], tmp_path: Path
) -> None:
    tokenizer = load_tokenizer(str(family_dirs[name]))
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(example) + "\n" for example, _ in EXAMPLES))

    loaded = load_examples(path, tokenizer, preference=False, max_length=2048, file_param="training_file")

    assert len(loaded.examples) == len(EXAMPLES)
    for example, (_, expected) in zip(loaded.examples, EXAMPLES, strict=True):
        (sequence,) = example.sequences
        runs = trained_runs(sequence.input_ids, sequence.labels)
        decoded = [tokenizer.decode(run, skip_special_tokens=False) for run in runs]
        assert decoded == expected(name), f"line {example.line}"
        if TINY_MODELS[name].adds_bos:  # the template writes BOS; the worker must not add a second
            assert sequence.input_ids.count(tokenizer.bos_token_id) == 1


@pytest.mark.parametrize("name", NAMES)
def test_prompt_completion_ends_with_the_eos_token(
    name: str, family_dirs: dict[str, Path], tmp_path: Path
) -> None:
    tokenizer = load_tokenizer(str(family_dirs[name]))
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps({"prompt": "Two plus two is", "completion": " four."}) + "\n")

    loaded = load_examples(path, tokenizer, preference=False, max_length=2048, file_param="training_file")
    (example,) = loaded.examples

    (sequence,) = example.sequences
    (run,) = trained_runs(sequence.input_ids, sequence.labels)
    assert tokenizer.decode(run, skip_special_tokens=False) == " four." + tokenizer.eos_token
