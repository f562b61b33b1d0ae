"""Penalties, logit_bias and logprobs through the gateway: passed to the replica, answered in OpenAI's shapes.

The replica is the fake one, streaming scripted deltas with token log probabilities as the
inference service sends them (the engines' side is tests/integration/inference/test_sampling_controls.py).
The openai SDK parses every answer, so a field out of shape fails here.
"""

from __future__ import annotations

import json
import math

import pytest

from tailor.inference.v1 import inference_service_pb2 as pb
from tests.unit.gateway.conftest import Gateway
from tests.unit.gateway.fakes import BASE_MODEL

HELLO = [{"role": "user", "content": "Hello"}]


def token(text: str, logprob: float, *alternatives: tuple[str, float]) -> pb.TokenLogprob:
    return pb.TokenLogprob(
        token=text,
        logprob=logprob,
        top_logprobs=[pb.TopLogprob(token=t, logprob=lp) for t, lp in alternatives],
    )


AHOY = token("Ahoy", -0.25, ("Ahoy", -0.25), ("Hello", -1.5))
# Its text is held back (say, for a stop string) when its log probability arrives.
HELD = token(" é", -2.0, ("!", -0.5), (" é", -2.0))
THERE = token(" there", -math.inf, ("!", -0.1), (" friend", -3.0))
SCRIPT = [
    pb.GenerateCompletionResponse(deltas=[pb.ChoiceDelta(index=0, text="Ahoy", logprobs=[AHOY])]),
    pb.GenerateCompletionResponse(deltas=[pb.ChoiceDelta(index=0, text="", logprobs=[HELD])]),
    pb.GenerateCompletionResponse(
        deltas=[
            pb.ChoiceDelta(
                index=0, text=" é there", logprobs=[THERE], finish_reason=pb.FINISH_REASON_STOP
            )
        ]
    ),
]


async def test_penalties_bias_and_top_logprobs_reach_the_replica(gateway: Gateway) -> None:
    await gateway.sdk().chat.completions.create(
        model=BASE_MODEL,
        messages=HELLO,
        frequency_penalty=1.5,
        presence_penalty=-0.5,
        logit_bias={"42": 100, "7": -100},
        logprobs=True,
        top_logprobs=3,
    )
    sampling = gateway.fakes.inference.requests[-1].sampling
    assert (sampling.frequency_penalty, sampling.presence_penalty) == (1.5, -0.5)
    assert dict(sampling.logit_bias) == {42: 100.0, 7: -100.0}
    assert sampling.top_logprobs == 3

    await gateway.sdk().chat.completions.create(model=BASE_MODEL, messages=HELLO, logprobs=True)
    assert gateway.fakes.inference.requests[-1].sampling.top_logprobs == 0, "the chosen tokens' only"
    await gateway.sdk().completions.create(model=BASE_MODEL, prompt="x", logprobs=2, frequency_penalty=2)
    sampling = gateway.fakes.inference.requests[-1].sampling
    assert (sampling.top_logprobs, sampling.frequency_penalty) == (2, 2.0)

    await gateway.sdk().chat.completions.create(model=BASE_MODEL, messages=HELLO, logprobs=False)
    sampling = gateway.fakes.inference.requests[-1].sampling
    for unset in ("top_logprobs", "frequency_penalty", "presence_penalty"):
        assert not sampling.HasField(unset), unset
    assert not sampling.logit_bias


async def test_chat_logprobs_have_openais_shape(gateway: Gateway) -> None:
    gateway.fakes.inference.script = SCRIPT
    answer = await gateway.sdk().chat.completions.create(
        model=BASE_MODEL, messages=HELLO, logprobs=True, top_logprobs=2
    )
    choice = answer.choices[0]
    assert choice.message.content == "Ahoy é there"
    assert choice.logprobs is not None and choice.logprobs.refusal is None
    content = choice.logprobs.content
    assert [t.token for t in content] == ["Ahoy", " é", " there"]
    assert [t.logprob for t in content] == [-0.25, -2.0, -9999.0], "-inf is OpenAI's -9999"
    assert content[1].bytes == list(" é".encode())
    assert [(t.token, t.logprob) for t in content[0].top_logprobs] == [("Ahoy", -0.25), ("Hello", -1.5)]
    assert content[0].top_logprobs[1].bytes == list(b"Hello")

    gateway.fakes.inference.script = None
    plain = await gateway.sdk().chat.completions.create(model=BASE_MODEL, messages=HELLO)
    assert plain.choices[0].logprobs is None


async def test_streamed_chat_chunks_carry_their_tokens_logprobs(gateway: Gateway) -> None:
    gateway.fakes.inference.script = SCRIPT
    stream = await gateway.sdk().chat.completions.create(
        model=BASE_MODEL, messages=HELLO, logprobs=True, top_logprobs=2, stream=True
    )
    chunks = [chunk async for chunk in stream]
    tokens = [
        t.token for chunk in chunks for choice in chunk.choices if choice.logprobs for t in choice.logprobs.content
    ]
    assert tokens == ["Ahoy", " é", " there"]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Ahoy é there"
    with_logprobs = [c.choices[0] for c in chunks if c.choices and c.choices[0].logprobs]
    assert with_logprobs[0].logprobs.content[0].top_logprobs[1].token == "Hello"


async def test_completion_logprobs_have_openais_legacy_shape(gateway: Gateway) -> None:
    gateway.fakes.inference.script = SCRIPT
    answer = await gateway.sdk().completions.create(model=BASE_MODEL, prompt="x", logprobs=1)
    logprobs = answer.choices[0].logprobs
    assert logprobs is not None
    assert logprobs.tokens == ["Ahoy", " é", " there"]
    assert logprobs.token_logprobs == [-0.25, -2.0, -9999.0]
    assert logprobs.text_offset == [0, 4, 6], "each token's place in the text"
    # The top alternatives, and the chosen token always (up to logprobs + 1 entries).
    assert logprobs.top_logprobs == [
        {"Ahoy": -0.25, "Hello": -1.5},
        {"!": -0.5, " é": -2.0},
        {"!": -0.1, " friend": -3.0, " there": -9999.0},
    ]


async def test_streamed_completion_offsets_count_on_across_chunks(gateway: Gateway) -> None:
    gateway.fakes.inference.script = SCRIPT
    async with gateway.http() as http:
        response = await http.post(
            "/v1/completions",
            json={"model": BASE_MODEL, "prompt": "x", "logprobs": 0, "stream": True},
        )
    payloads = [line.removeprefix("data: ") for line in response.text.split("\n\n") if line.startswith("data: {")]
    choices = [json.loads(payload)["choices"][0] for payload in payloads]
    offsets = [offset for choice in choices if choice["logprobs"] for offset in choice["logprobs"]["text_offset"]]
    assert offsets == [0, 4, 6]
    assert choices[-1]["finish_reason"] == "stop" and choices[-1]["logprobs"] is None


@pytest.mark.parametrize(
    ("extra", "message"),
    [({"logit_bias": {"1" * 40: 1}}, "not a token id"), ({"logit_bias": {"abc" * 1000: 1}}, "not a token id")],
)
async def test_a_bad_logit_bias_key_is_named_without_echoing_it_whole(
    gateway: Gateway, extra: dict, message: str
) -> None:
    async with gateway.http() as http:
        response = await http.post("/v1/chat/completions", json={"model": BASE_MODEL, "messages": HELLO, **extra})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "logit_bias" and message in error["message"]
    assert len(error["message"]) < 200
