"""Examples become token sequences trained exactly on what the assistant writes, and bad lines are named."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from transformers import PreTrainedTokenizerBase

from services.common.training_format import ExampleFormat
from services.trainer.worker.data import (
    IGNORE_INDEX,
    ExampleSet,
    TokenizedSequence,
    load_examples,
)
from services.trainer.worker.failures import BASE_MODEL_UNAVAILABLE, JobFailure
from services.trainer.worker.models import load_tokenizer

IM_END = "<|im_end|>"


def write_jsonl(path: Path, records: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def load(tmp_path: Path, tokenizer: PreTrainedTokenizerBase, records: list[Any], **kwargs: Any) -> ExampleSet:
    options = {"preference": False, "max_length": 512, "file_param": "training_file", **kwargs}
    return load_examples(write_jsonl(tmp_path / "data.jsonl", records), tokenizer, **options)


def trained_text(tokenizer: PreTrainedTokenizerBase, sequence: TokenizedSequence) -> str:
    return tokenizer.decode([label for label in sequence.labels if label != IGNORE_INDEX])


def trained_runs(tokenizer: PreTrainedTokenizerBase, sequence: TokenizedSequence) -> list[str]:
    """The trained stretches of a sequence, decoded one by one."""
    runs, current = [], []
    for token, label in zip(sequence.input_ids, sequence.labels, strict=True):
        if label != IGNORE_INDEX:
            assert label == token, "a label must be the token at its own position"
            current.append(token)
        elif current:
            runs.append(tokenizer.decode(current))
            current = []
    if current:
        runs.append(tokenizer.decode(current))
    return runs


def chat(*turns: tuple[str, str], **extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": role, "content": content} for role, content in turns], **extra}


def test_chat_examples_train_exactly_every_assistant_reply_and_its_end_of_turn(
    tmp_path: Path, tokenizer: PreTrainedTokenizerBase
) -> None:
    examples = load(
        tmp_path,
        tokenizer,
        [
            chat(
                ("system", "Be brief."),
                ("user", "Hi"),
                ("assistant", "Hello!"),
                ("user", "Name?"),
                ("assistant", "Tai."),
            )
        ],
    )

    (sequence,) = examples.examples[0].sequences
    assert trained_runs(tokenizer, sequence) == [f"Hello!{IM_END}", f"Tai.{IM_END}"]
    assert examples.format is ExampleFormat.CHAT
    assert examples.num_tokens == len(sequence.input_ids)


def test_assistant_messages_with_weight_zero_are_context_not_targets(
    tmp_path: Path, tokenizer: PreTrainedTokenizerBase
) -> None:
    record = chat(("user", "Hi"), ("assistant", "Hello!"), ("user", "Again?"), ("assistant", "Yes."))
    record["messages"][1]["weight"] = 0

    (sequence,) = load(tmp_path, tokenizer, [record]).examples[0].sequences

    assert trained_runs(tokenizer, sequence) == [f"Yes.{IM_END}"]
    assert "Hello!" in tokenizer.decode(sequence.input_ids)


def test_weight_zero_is_honoured_with_a_template_that_marks_every_assistant_message(
    tmp_path: Path, tailor_tiny_dir: Path
) -> None:
    # Templates of other models know nothing of OpenAI's `weight`: they mark every assistant turn.
    template = (tailor_tiny_dir / "chat_template.jinja").read_text()
    weight_branch = "{%- if message.weight is defined and message.weight == 0 -%}"
    assert weight_branch in template
    unaware = load_tokenizer(
        str(tailor_tiny_dir), chat_template=template.replace(weight_branch, "{%- if false -%}")
    )
    record = chat(("user", "Hi"), ("assistant", "Hello!"), ("user", "Again?"), ("assistant", "Yes."))
    record["messages"][1]["weight"] = 0

    (sequence,) = load(tmp_path, unaware, [record]).examples[0].sequences

    assert trained_runs(unaware, sequence) == [f"Yes.{IM_END}"]


def test_tool_calls_are_rendered_by_the_template_and_trained(
    tmp_path: Path, tokenizer: PreTrainedTokenizerBase
) -> None:
    record = {
        "messages": [
            {"role": "user", "content": "Weather in Lisbon?"},
            {
                "role": "assistant",
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Lisbon"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "21"},
            {"role": "assistant", "content": "It is 21 degrees."},
        ],
        "tools": [
            {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
        ],
    }

    (sequence,) = load(tmp_path, tokenizer, [record]).examples[0].sequences

    call = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Lisbon"}}\n</tool_call>'
    assert trained_runs(tokenizer, sequence) == [f"{call}{IM_END}", f"It is 21 degrees.{IM_END}"]
    assert tokenizer.decode(sequence.input_ids).startswith("<|im_start|>system\n# Tools")


def test_prompt_completion_examples_train_the_completion_and_the_end_token(
    tmp_path: Path, tokenizer: PreTrainedTokenizerBase
) -> None:
    examples = load(tmp_path, tokenizer, [{"prompt": "2 + 2 =", "completion": " 4"}])

    (sequence,) = examples.examples[0].sequences
    assert tokenizer.decode(sequence.input_ids) == f"2 + 2 = 4{tokenizer.eos_token}"
    assert trained_text(tokenizer, sequence) == f" 4{tokenizer.eos_token}"
    assert examples.format is ExampleFormat.PROMPT_COMPLETION


def test_preference_examples_pair_the_outputs_and_train_only_the_final_reply(
    tmp_path: Path, tokenizer: PreTrainedTokenizerBase
) -> None:
    record = {
        "input": {
            "messages": [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hey"},
                {"role": "user", "content": "How cold is it?"},
            ]
        },
        "preferred_output": [{"role": "assistant", "content": "About 12 degrees."}],
        "non_preferred_output": [{"role": "assistant", "content": "Cold."}],
    }

    examples = load(tmp_path, tokenizer, [record], preference=True)

    preferred, non_preferred = examples.examples[0].sequences
    assert trained_runs(tokenizer, preferred) == [f"About 12 degrees.{IM_END}"]
    assert trained_runs(tokenizer, non_preferred) == [f"Cold.{IM_END}"]
    assert examples.format is ExampleFormat.PREFERENCE


def test_long_examples_are_truncated_from_the_end_and_counted(
    tmp_path: Path, tokenizer: PreTrainedTokenizerBase
) -> None:
    short = chat(("user", "Hi"), ("assistant", "Hello!"))
    long_reply = chat(("user", "Hi"), ("assistant", "word " * 200))
    long_prompt = chat(("user", "word " * 200), ("assistant", "Fine."))

    examples = load(tmp_path, tokenizer, [short, long_reply, long_reply, long_prompt], max_length=64)

    assert (examples.truncated_examples, examples.skipped_examples) == (2, 1)
    assert [example.line for example in examples.examples] == [1, 2, 3]  # nothing left to train on in line 4
    truncated = examples.examples[1].sequences[0]
    assert len(truncated) == 64 and truncated.num_trained_tokens > 0
    assert tokenizer.decode(truncated.input_ids).startswith(
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nword"
    )


def test_truncated_lines_are_named_with_their_token_counts(
    tmp_path: Path, tokenizer: PreTrainedTokenizerBase
) -> None:
    short = chat(("user", "Hi"), ("assistant", "Hello!"))
    long_reply = chat(("user", "Hi"), ("assistant", "word " * 200))
    full_length = len(load(tmp_path, tokenizer, [long_reply]).examples[0].sequences[0])

    examples = load(tmp_path, tokenizer, [short, long_reply, short, long_reply], max_length=64)

    assert [(long.line, long.tokens) for long in examples.truncated_lines] == [(2, full_length), (4, full_length)]


def test_examples_longer_than_the_context_fail_the_file_naming_the_first_twenty_lines(
    tmp_path: Path, tokenizer: PreTrainedTokenizerBase
) -> None:
    short = chat(("user", "Hi"), ("assistant", "Hello!"))
    long_reply = chat(("user", "Hi"), ("assistant", "word " * 200))
    full_length = len(load(tmp_path, tokenizer, [long_reply]).examples[0].sequences[0])

    with pytest.raises(JobFailure) as failed:
        load(tmp_path, tokenizer, [short, *[long_reply] * 25], max_length=64, context_length=128)

    assert (failed.value.code, failed.value.param) == ("invalid_training_file", "training_file")
    named = ", ".join(f"line {line}: {full_length} tokens" for line in range(2, 22))
    assert failed.value.message == (
        "The training file is invalid: 25 examples are longer than the model's context of 128 tokens "
        f"({named} and 5 more); shorten or split them."
    )


def test_an_example_within_the_context_is_only_truncated(
    tmp_path: Path, tokenizer: PreTrainedTokenizerBase
) -> None:
    long_reply = chat(("user", "Hi"), ("assistant", "word " * 200))
    examples = load(tmp_path, tokenizer, [long_reply], max_length=64, context_length=2048)
    assert examples.truncated_examples == 1 and len(examples.examples[0].sequences[0]) == 64


@pytest.mark.parametrize(
    ("lines", "bad_line", "reason"),
    [
        (
            [
                '{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hey"}]}',
                "{not json",
            ],
            2,
            "invalid JSON",
        ),
        ([chat(("user", "Hi"), ("assistant", "Hey")), chat(("user", "Hi"))], 2, "no assistant message"),
        ([chat(("wizard", "Hi"), ("assistant", "Hey"))], 1, 'unknown role "wizard"'),
        (
            [
                {
                    "messages": [
                        {"role": "user", "content": "Hi"},
                        {"role": "assistant", "content": "Hey", "weight": 2},
                    ]
                }
            ],
            1,
            "weight must be 0 or 1",
        ),
        (
            [chat(("user", "Hi"), ("assistant", "Hey")), {"prompt": "a", "completion": "b"}],
            2,
            "but line 1 is a chat example",
        ),
        (
            [
                {
                    "input": {"messages": [{"role": "user", "content": "Hi"}]},
                    "preferred_output": [],
                    "non_preferred_output": [],
                }
            ],
            1,
            "needs a DPO job",
        ),
        (["[1, 2]"], 1, "JSON object"),
        ([{"text": "hello"}], 1, "not a fine-tuning example"),
    ],
)
def test_an_invalid_line_fails_the_job_naming_the_line(
    tmp_path: Path, tokenizer: PreTrainedTokenizerBase, lines: list[Any], bad_line: int, reason: str
) -> None:
    with pytest.raises(JobFailure) as failure:
        load(tmp_path, tokenizer, lines, file_param="validation_file")

    assert failure.value.code == "invalid_validation_file"
    assert failure.value.param == "validation_file"
    assert f"line {bad_line}:" in failure.value.message
    assert reason in failure.value.message


def test_a_dpo_job_refuses_chat_examples(tmp_path: Path, tokenizer: PreTrainedTokenizerBase) -> None:
    with pytest.raises(JobFailure, match=r"line 1: a DPO job needs preference examples"):
        load(tmp_path, tokenizer, [chat(("user", "Hi"), ("assistant", "Hey"))], preference=True)


def test_a_file_without_examples_is_invalid(tmp_path: Path, tokenizer: PreTrainedTokenizerBase) -> None:
    with pytest.raises(JobFailure, match="holds no examples") as failure:
        load(tmp_path, tokenizer, ["", "  "])
    assert failure.value.code == "invalid_training_file"


def test_a_chat_template_that_does_not_mark_generation_is_refused(tailor_tiny_dir: Path) -> None:
    with pytest.raises(JobFailure) as failure:
        load_tokenizer(
            str(tailor_tiny_dir), chat_template="{% for m in messages %}{{ m.content }}{% endfor %}"
        )
    assert failure.value.code == BASE_MODEL_UNAVAILABLE
    assert "{% generation %}" in failure.value.message


def test_a_file_starting_with_a_byte_order_mark_trains_like_one_without(
    tmp_path: Path, tokenizer: PreTrainedTokenizerBase
) -> None:
    # The dataset service accepts such files as processed; training must not then reject line 1.
    chat = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + (json.dumps(chat) + "\n").encode() * 2)
    with_bom = load_examples(path, tokenizer, preference=False, max_length=512, file_param="training_file")
    without = load(tmp_path, tokenizer, [chat, chat])
    assert [e.sequences for e in with_bom.examples] == [e.sequences for e in without.examples]
