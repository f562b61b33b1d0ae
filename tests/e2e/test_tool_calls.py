"""A function-calling fine-tune of tailor-tiny answers the SDK with ``tool_calls``, plain and streamed.

tailor-tiny writes calls as Hermes does (``<tool_call>{...}</tool_call>``, its ChatML
template); the model is trained through the SDK on OpenAI tool-call examples
(:mod:`tests.e2e.tool_calling`, reusable for other base models).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import Stack
from tests.e2e.tool_calling import (
    ASKED,
    CALL_ARGUMENTS,
    CALL_NAME,
    MAX_TOKENS,
    TOOLS,
    TrainedToolModel,
    ask,
    train_tool_calling_model,
    trained_call_of,
)

pytestmark = pytest.mark.slow

OPENAI_CALL_ID = re.compile(r"call_[A-Za-z0-9]{24}")


@pytest.fixture(scope="module")
def tool_model(stack: Stack) -> Iterator[TrainedToolModel]:
    yield train_tool_calling_model(stack.client(), "tailor-tiny")


def test_the_answer_is_the_trained_tool_call(stack: Stack, tool_model: TrainedToolModel) -> None:
    answer = ask(stack.client(), tool_model.model)
    (choice,) = answer.choices
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None and choice.message.role == "assistant"
    call = trained_call_of(choice.message)
    assert call is not None, choice.message
    assert call.function.name == CALL_NAME and json.loads(call.function.arguments) == CALL_ARGUMENTS
    assert isinstance(call.function.arguments, str) and OPENAI_CALL_ID.fullmatch(call.id)


def test_the_streamed_answer_accumulates_to_the_same_call(stack: Stack, tool_model: TrainedToolModel) -> None:
    client = stack.client()
    chunks = list(
        client.chat.completions.create(
            model=tool_model.model,
            messages=[{"role": "user", "content": ASKED}],
            tools=TOOLS,  # type: ignore[arg-type]
            temperature=0,
            max_tokens=MAX_TOKENS,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    finishes = [c.finish_reason for chunk in chunks for c in chunk.choices if c.finish_reason]
    assert finishes == ["tool_calls"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    entries = [entry for chunk in chunks for c in chunk.choices for entry in c.delta.tool_calls or ()]
    assert [e.index for e in entries] == [0] and entries[0].type == "function" and entries[0].id
    assert "".join(c.delta.content or "" for chunk in chunks for c in chunk.choices) == ""

    # the SDK's own accumulator
    with client.chat.completions.stream(
        model=tool_model.model,
        messages=[{"role": "user", "content": ASKED}],
        tools=TOOLS,  # type: ignore[arg-type]
        temperature=0,
        max_tokens=MAX_TOKENS,
    ) as stream:
        final = stream.get_final_completion()
    (choice,) = final.choices
    assert choice.finish_reason == "tool_calls" and trained_call_of(choice.message) is not None


def test_tool_choice_none_answers_in_text(stack: Stack, tool_model: TrainedToolModel) -> None:
    answer = ask(stack.client(), tool_model.model, tool_choice="none")
    (choice,) = answer.choices
    assert choice.message.tool_calls is None
    assert isinstance(choice.message.content, str) and choice.finish_reason in ("stop", "length")
