"""The dataset service's upload validator and the worker's loader agree on every file.

A file the validator marks ``processed`` must train, and a file the worker refuses must have been
refused at upload, naming the same line. Both read lines through services.common.training_format,
but each adds its own steps (the validator: streaming, blocks, statistics; the worker: the job's
method and tokenization with the base model's chat template), so these properties are checked
on generated files of every format: valid ones (which must also tokenize with tailor-tiny's chat
template), mutations of them, and raw lines, with function and tool messages, weights, byte
order marks, CRLF, blank lines and odd unicode (surrogates included).
"""

from __future__ import annotations

import copy
import functools
import json
import operator
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from transformers import PreTrainedTokenizerBase

from services.dataset.validation import JsonlValidator, ValidationResult
from services.trainer.worker.data import IGNORE_INDEX, ExampleSet, load_examples
from services.trainer.worker.failures import JobFailure

# Longer than any generated example: truncation is not under test here.
MAX_LENGTH = 1 << 20
PROPERTY_SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Text a chat template or tokenizer might trip on; surrogates are left to the strategies below.
ODD_TEXT = ["", " ", "Paris.", "🎉 東京", "\u2028", "\ufeff", "\x00", "\r", "{{ x }}", "{% raw %}", "<|im_end|>"]
TEXT = st.text(max_size=10) | st.sampled_from(ODD_TEXT)  # st.text() draws no surrogates
SURROGATE_TEXT = st.text(
    alphabet=st.characters(categories=["Cs"]) | st.sampled_from("ab🎉"), min_size=1, max_size=4
)
NAME = st.sampled_from(["get_weather", "lookup", "f"])
TEXT_PARTS = st.lists(st.fixed_dictionaries({"type": st.just("text"), "text": TEXT}), max_size=2)
CONTENT = TEXT | TEXT_PARTS
WEIGHT = st.sampled_from([0, 1, 0.0, 1.0])

ARGUMENTS = st.sampled_from(['{"city": "Lisbon"}', "{}"]) | TEXT
FUNCTION_CALL = st.fixed_dictionaries({"name": NAME, "arguments": ARGUMENTS})
TOOL_CALL = st.fixed_dictionaries({"id": TEXT, "type": st.just("function"), "function": FUNCTION_CALL})
FUNCTION_DEFINITION = st.fixed_dictionaries(
    {"name": NAME},
    optional={
        "description": TEXT,
        "parameters": st.just({"type": "object"}) | st.dictionaries(TEXT, TEXT | st.integers(), max_size=2),
        "strict": st.booleans(),
    },
)
TOOL_DEFINITION = st.fixed_dictionaries({"type": st.just("function"), "function": FUNCTION_DEFINITION})


def assistant(*, weighted: bool) -> st.SearchStrategy[dict[str, Any]]:
    """An assistant message: text, tool calls, or a deprecated function call; weighted if ``weighted``."""
    weight = {"weight": WEIGHT} if weighted else {}
    return (
        st.fixed_dictionaries(
            {"role": st.just("assistant"), "content": CONTENT}, optional={"name": TEXT, **weight}
        )
        | st.fixed_dictionaries(
            {"role": st.just("assistant"), "tool_calls": st.lists(TOOL_CALL, min_size=1, max_size=2)},
            optional={"content": st.none() | CONTENT, **weight},
        )
        | st.fixed_dictionaries(
            {"role": st.just("assistant"), "function_call": FUNCTION_CALL},
            optional={"content": st.none() | TEXT, **weight},
        )
    )


USER = st.fixed_dictionaries({"role": st.just("user"), "content": CONTENT}, optional={"name": TEXT})
CONTEXT_MESSAGE = (
    st.fixed_dictionaries(
        {"role": st.sampled_from(["system", "developer"]), "content": CONTENT}, optional={"name": TEXT}
    )
    | USER
    | assistant(weighted=True)
    | st.fixed_dictionaries({"role": st.just("tool"), "tool_call_id": TEXT, "content": CONTENT})
    | st.fixed_dictionaries({"role": st.just("function"), "name": NAME | TEXT, "content": CONTENT})
)
TRAINED_REPLY = assistant(weighted=False)

CHAT_MESSAGES = st.tuples(st.lists(CONTEXT_MESSAGE, max_size=4), TRAINED_REPLY).map(lambda p: [*p[0], p[1]])
CHAT = st.fixed_dictionaries(
    {"messages": CHAT_MESSAGES},
    optional={
        "tools": st.lists(TOOL_DEFINITION, max_size=2),
        "functions": st.lists(FUNCTION_DEFINITION, max_size=2),
        "parallel_tool_calls": st.booleans(),
    },
)
PROMPT_COMPLETION = st.fixed_dictionaries({"prompt": TEXT, "completion": TEXT.filter(bool)})


@st.composite
def preference_examples(draw: st.DrawFn) -> dict[str, Any]:
    source = draw(
        st.fixed_dictionaries(
            {"messages": st.tuples(st.lists(CONTEXT_MESSAGE, max_size=3), USER).map(lambda p: [*p[0], p[1]])},
            optional={"tools": st.lists(TOOL_DEFINITION, max_size=1), "parallel_tool_calls": st.booleans()},
        )
    )
    example: dict[str, Any] = {"input": source}
    for name in ("preferred", "non_preferred"):
        key = draw(st.sampled_from([f"{name}_output", f"{name}_completion"]))
        example[key] = [draw(TRAINED_REPLY)]
    return example


EXAMPLES = {"chat": CHAT, "prompt_completion": PROMPT_COMPLETION, "preference": preference_examples()}

# What a mutation puts in: JSON values of every type, keys of every format, and text no tokenizer reads.
KEYS = st.sampled_from(
    ["role", "content", "weight", "name", "tool_calls", "tool_call_id", "function_call", "function",
     "arguments", "id", "type", "text", "messages", "tools", "functions", "parallel_tool_calls", "prompt",
     "completion", "input", "preferred_output", "non_preferred_output", "preferred_completion",
     "non_preferred_completion"]
)  # fmt: skip
ROLES = ["system", "developer", "user", "assistant", "tool", "function", "wizard", "text", "image_url"]
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-1, 2)
    | st.floats(allow_nan=True)
    | st.sampled_from(ROLES)
    | TEXT
    | SURROGATE_TEXT
    | st.just([])
    | st.just({})
)


def _paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """The path to every value inside ``value``, itself excluded."""
    if isinstance(value, dict):
        children: Any = value.items()
    else:
        children = enumerate(value) if isinstance(value, list) else ()
    for key, child in children:
        yield (*path, key)
        yield from _paths(child, (*path, key))


@st.composite
def mutated(draw: st.DrawFn, examples: st.SearchStrategy[dict[str, Any]]) -> Any:
    """An example with one value replaced, removed, or given an extra key."""
    example = copy.deepcopy(draw(examples))
    path = draw(st.sampled_from(list(_paths(example))))
    parent = functools.reduce(operator.getitem, path[:-1], example)
    action = draw(st.sampled_from(["replace", "delete", "add"]))
    if action == "add" and isinstance(parent[path[-1]], dict):
        parent[path[-1]][draw(KEYS | TEXT)] = draw(SCALARS)
    elif action == "delete":
        del parent[path[-1]]
    else:
        parent[path[-1]] = draw(SCALARS)
    return example


RAW_LINES = st.sampled_from(
    ["", "   ", "\t", "\u2028", "not json", "[1, 2]", "null", '"text"', "{}", '{"messages": [}',
     '{"a": 1} {"b": 2}', '{"prompt": "a", "completion": "\\ud800"}', "\ufeff{}",
     '{"prompt": 1' + "0" * 5000 + ', "completion": "b"}']
)  # fmt: skip


@st.composite
def files(draw: st.DrawFn, *, valid_only: bool) -> bytes:
    """A JSONL file of one to three lines, mostly of one format, with the variations editors leave."""
    file_format = draw(st.sampled_from(sorted(EXAMPLES)))
    kinds = ["valid", "blank"] if valid_only else ["valid", *["mutated"] * 3, "other_format", "raw"]
    lines = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(kinds))
        if kind == "raw":
            lines.append(draw(RAW_LINES))
            continue
        if kind == "blank":
            lines.append(draw(st.sampled_from(["", "  ", "\r"])))
            continue
        line_format = draw(st.sampled_from(sorted(EXAMPLES))) if kind == "other_format" else file_format
        examples = EXAMPLES[line_format]
        value = draw(mutated(examples)) if kind == "mutated" else draw(examples)
        line = json.dumps(value, ensure_ascii=draw(st.booleans()))
        lines.append(line + draw(st.sampled_from(["", "\r", " "])))
    if valid_only and all(not line.strip() for line in lines):
        lines.append(json.dumps(draw(EXAMPLES[file_format])))
    text = "\n".join(lines) + draw(st.sampled_from(["", "\n"]))
    if draw(st.booleans()):
        text = "\ufeff" + text
    # Unpaired surrogates written raw (ensure_ascii=False) become bytes that are not UTF-8.
    return text.encode("utf-8", "surrogatepass")


def validate_at_upload(data: bytes) -> ValidationResult:
    validator = JsonlValidator()
    validator.feed(data)
    return validator.finish()


def load_in_worker(path: Path, data: bytes, tokenizer: PreTrainedTokenizerBase) -> ExampleSet | JobFailure:
    """The worker's examples of the file, for the method (SFT or DPO) that trains its format; else why not."""
    path.write_bytes(data)
    failures = []
    for preference in (False, True):
        try:
            return load_examples(
                path, tokenizer, preference=preference, max_length=MAX_LENGTH, file_param="training_file"
            )
        except JobFailure as refused:
            assert refused.code == "invalid_training_file", refused
            failures.append(refused)
    # The reason that is not about the method: that one is the job's choice, not the file's fault.
    wrong_method = ("a DPO job needs", "needs a DPO job")
    return next((f for f in failures if not any(w in f.message for w in wrong_method)), failures[0])


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("agreement") / "file.jsonl"


def assert_agree(data: bytes, scratch: Path, tokenizer: PreTrainedTokenizerBase) -> ValidationResult:
    uploaded = validate_at_upload(data)
    loaded = load_in_worker(scratch, data, tokenizer)
    event("processed" if uploaded.valid else f"refused: {uploaded.problems[0].code}")
    if uploaded.valid:
        assert isinstance(loaded, ExampleSet), f"processed at upload, refused by the worker: {loaded.message}"
        assert uploaded.statistics is not None
        assert (len(loaded), loaded.format) == (uploaded.statistics.examples, uploaded.statistics.format)
        for example in loaded.examples:
            for sequence in example.sequences:
                assert any(label != IGNORE_INDEX for label in sequence.labels), "an example trains nothing"
    else:
        assert isinstance(loaded, JobFailure), f"refused at upload ({uploaded.summary()}), trained anyway"
        first = uploaded.problems[0]
        same_line = f"line {first.line}: " in loaded.message or first.line == 0
        assert same_line, (uploaded.summary(), loaded.message)
    return uploaded


@PROPERTY_SETTINGS
@given(data=files(valid_only=False))
def test_every_file_is_accepted_by_both_or_refused_by_both_on_the_same_line(
    data: bytes, scratch: Path, tokenizer: PreTrainedTokenizerBase
) -> None:
    assert_agree(data, scratch, tokenizer)


@PROPERTY_SETTINGS
@given(data=files(valid_only=True))
def test_valid_files_of_every_format_upload_and_tokenize_with_the_chat_template(
    data: bytes, scratch: Path, tokenizer: PreTrainedTokenizerBase
) -> None:
    uploaded = assert_agree(data, scratch, tokenizer)
    assert uploaded.valid, uploaded.summary()


def test_a_deprecated_function_call_and_its_result_are_rendered_and_the_call_trained(
    scratch: Path, tokenizer: PreTrainedTokenizerBase
) -> None:
    example = {
        "messages": [
            {"role": "user", "content": "Weather in Lisbon?"},
            {
                "role": "assistant",
                "function_call": {"name": "get_weather", "arguments": '{"city": "Lisbon"}'},
            },
            {"role": "function", "name": "get_weather", "content": "21"},
            {"role": "assistant", "content": "It is 21 degrees."},
        ],
        "functions": [{"name": "get_weather", "parameters": {"type": "object"}}],
    }
    loaded = load_in_worker(scratch, (json.dumps(example) + "\n").encode(), tokenizer)
    assert isinstance(loaded, ExampleSet)
    (sequence,) = loaded.examples[0].sequences
    text = tokenizer.decode(sequence.input_ids)
    offered = '{"type": "function", "function": {"name": "get_weather"' in text
    assert offered, "the function is offered as a tool"
    assert "<|im_start|>tool\n21<|im_end|>" in text, "the function's result is a tool message"
    trained = tokenizer.decode([label for label in sequence.labels if label != IGNORE_INDEX])
    call = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Lisbon"}}\n</tool_call>'
    assert trained == f"{call}<|im_end|>It is 21 degrees.<|im_end|>"
