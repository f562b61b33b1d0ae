"""A function-calling fine-tune through the SDK, and the checks that it answers with ``tool_calls``.

Reusable for any base model the stack serves (``base_model``): :func:`train_tool_calling_model`
uploads a file of OpenAI tool-call examples (``tools`` + an assistant turn with
``tool_calls``), fine-tunes on it, and goes on fine-tuning the result (a job on the ``ft:``
model continues its adapter) until the model's greedy answer to a trained question is the
trained call, within a few rounds; past that it fails saying what the model answered. On a
2-core CPU tailor-tiny learns it in one round (a job of about 30 s).

Every example asks about the weather in Lisbon in other words and gets the same call, so
the trained reply does not depend on the question; the checks ask one of the trained
questions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import openai

from tests.e2e.jobs import fine_tune

TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The current weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
                "required": ["city"],
            },
        },
    }
]
CALL_NAME = "get_weather"
CALL_ARGUMENTS = {"city": "Lisbon", "unit": "c"}
QUESTIONS = [
    f"{opening} the weather in Lisbon {when}?"
    for opening in ("What is", "How is", "Tell me", "Check")
    for when in ("today", "now", "right now", "this morning", "this afternoon", "tonight", "at the moment")
]
ASKED = QUESTIONS[0]
# Enough for tailor-tiny (rate 2e-3 at multiplier 1): 70 steps of 4 examples, loss ~0.01,
# about 30 s of job on a 2-core CPU.
HYPERPARAMETERS: dict[str, Any] = {"n_epochs": 10, "batch_size": 4, "learning_rate_multiplier": 5.0}
MAX_ROUNDS = 3
MAX_TOKENS = 64


def examples() -> list[dict[str, Any]]:
    """The training file's lines: each question answered by the same call (OpenAI's format)."""
    call = {
        "id": "call_weather",
        "type": "function",
        "function": {"name": CALL_NAME, "arguments": json.dumps(CALL_ARGUMENTS)},
    }
    return [
        {
            "messages": [{"role": "user", "content": question}, {"role": "assistant", "tool_calls": [call]}],
            "tools": TOOLS,
        }
        for question in QUESTIONS
    ]


@dataclass(frozen=True)
class TrainedToolModel:
    model: str
    rounds: int


def train_tool_calling_model(
    client: openai.OpenAI,
    base_model: str,
    *,
    hyperparameters: dict[str, Any] | None = None,
    suffix: str = "tools",
    max_rounds: int = MAX_ROUNDS,
) -> TrainedToolModel:
    """Fine-tune ``base_model`` until it answers :data:`ASKED` with the trained call (greedy)."""
    content = "".join(json.dumps(example) + "\n" for example in examples()).encode()
    uploaded = client.files.create(file=("tool_calls.jsonl", content), purpose="fine-tune")
    assert client.files.wait_for_processing(uploaded.id, poll_interval=0.5).status == "processed"
    model, answer = base_model, None
    for round_ in range(1, max_rounds + 1):
        tuning = hyperparameters or HYPERPARAMETERS
        job = fine_tune(client, model, uploaded.id, suffix=suffix, seed=7, hyperparameters=tuning)
        model = job.fine_tuned_model or ""
        answer = ask(client, model)
        if trained_call_of(answer.choices[0].message) is not None:
            return TrainedToolModel(model, round_)
    assert answer is not None
    raw = ask(client, model, tool_choice="none").choices[0].message.content
    raise AssertionError(
        f"after {max_rounds} rounds {model} still answered {answer.choices[0].message!r} "
        f"(with tool_choice none, the text {raw!r})"
    )


def ask(client: openai.OpenAI, model: str, **options: Any) -> Any:
    """The greedy answer to :data:`ASKED` with the tools."""
    return client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": ASKED}],
        tools=TOOLS,  # type: ignore[arg-type]
        temperature=0,
        max_tokens=MAX_TOKENS,
        **options,
    )


def trained_call_of(message: Any) -> Any:
    """The message's one tool call if it is the trained call, else None."""
    calls = message.tool_calls or []
    if len(calls) != 1 or calls[0].type != "function" or calls[0].function.name != CALL_NAME:
        return None
    try:
        arguments = json.loads(calls[0].function.arguments)
    except ValueError:
        return None
    return calls[0] if arguments == CALL_ARGUMENTS else None
