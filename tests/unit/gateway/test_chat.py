"""/v1/chat/completions and /v1/completions: OpenAI's shapes, SSE framing, refusals, cancellation."""

from __future__ import annotations

import asyncio
import json

import httpx
import openai
import pytest

from services.gateway.generation import FINISH_REASONS
from tailor.inference.v1 import inference_service_pb2 as inference_pb
from tests.unit.gateway.conftest import KEY_B, Gateway
from tests.unit.gateway.fakes import BASE_MODEL
from tests.unit.gateway.test_models import fine_tuned_model

HELLO = [{"role": "user", "content": "Hello"}]


def sse_payloads(body: str) -> list[str]:
    """The ``data:`` payloads of an SSE body, checking each event is one line ended by a blank line."""
    assert body.endswith("\n\n")
    events = body[:-2].split("\n\n")
    assert all(event.startswith("data: ") and "\n" not in event for event in events), events
    return [event.removeprefix("data: ") for event in events]


async def test_plain_completion_has_openais_shape(gateway: Gateway) -> None:
    completion = await gateway.sdk().chat.completions.create(model=BASE_MODEL, messages=HELLO, n=2)
    assert completion.id.startswith("chatcmpl-") and completion.object == "chat.completion"
    assert isinstance(completion.created, int) and completion.model == BASE_MODEL
    assert [c.index for c in completion.choices] == [0, 1]
    for choice in completion.choices:
        assert choice.message.role == "assistant" and choice.message.content == "Ahoy from Tailor"
        assert choice.finish_reason == "stop" and choice.logprobs is None
    assert completion.usage is not None
    assert (
        completion.usage.prompt_tokens,
        completion.usage.completion_tokens,
        completion.usage.total_tokens,
    ) == (7, 6, 13)


async def test_streamed_chunks_through_the_sdk(gateway: Gateway) -> None:
    stream = await gateway.sdk().chat.completions.create(
        model=BASE_MODEL, messages=HELLO, n=2, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    assert len({c.id for c in chunks}) == 1 and all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    texts: dict[int, str] = {0: "", 1: ""}
    finishes: dict[int, list[str]] = {0: [], 1: []}
    for chunk in chunks[:-1]:
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
            if choice.finish_reason is not None:
                finishes[choice.index].append(choice.finish_reason)
        assert chunk.usage is None
    assert texts == {0: "Ahoy from Tailor", 1: "Ahoy from Tailor"}
    assert finishes == {0: ["stop"], 1: ["stop"]}  # exactly one per choice
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 13


async def test_sse_framing_on_the_wire(gateway: Gateway) -> None:
    async with gateway.http() as http:
        response = await http.post(
            "/v1/chat/completions", json={"model": BASE_MODEL, "messages": HELLO, "stream": True}
        )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-request-id"]
    payloads = sse_payloads(response.text)
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(p) for p in payloads[:-1]]
    assert all("usage" not in c for c in chunks)  # only sent when include_usage asks
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    assert chunks[-1]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}


async def test_request_fields_reach_inference(gateway: Gateway) -> None:
    await gateway.sdk().chat.completions.create(
        model=BASE_MODEL,
        messages=[
            {"role": "system", "content": "Be a pirate."},
            {"role": "user", "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}]},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "42"},
        ],
        temperature=0.3,
        top_p=0.9,
        max_tokens=5,
        max_completion_tokens=9,
        stop="END",
        seed=11,
        tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        user="someone",
        presence_penalty=0.5,
        metadata={"k": "v"},
    )
    sent = gateway.fakes.inference.requests[-1]
    assert sent.base_model == BASE_MODEL and not sent.HasField("adapter")
    assert [m.role for m in sent.chat.messages] == ["system", "user", "assistant", "tool"]
    assert sent.chat.messages[1].content == "Hi there"
    assert sent.chat.messages[2].tool_calls[0].name == "f" and sent.chat.messages[3].tool_call_id == "c1"
    assert json.loads(sent.chat.tools_json)[0]["function"]["name"] == "f"
    sampling = sent.sampling
    assert (sampling.temperature, sampling.top_p, sampling.max_tokens, sampling.seed) == (0.3, 0.9, 9, 11)
    assert list(sampling.stop) == ["END"] and not sampling.HasField("n")


async def test_fine_tuned_models_and_checkpoints_run_with_their_adapter(gateway: Gateway) -> None:
    name, checkpoints = await fine_tuned_model(gateway)
    client = gateway.sdk()
    for model in (name, checkpoints[0]):
        answer = await client.chat.completions.create(model=model, messages=HELLO)
        assert answer.model == model
        adapter = gateway.fakes.inference.requests[-1].adapter
        assert adapter.name == model and adapter.base_model == BASE_MODEL
        assert not adapter.uri, "only the name: the replica resolves it through the registry"
    with pytest.raises(openai.NotFoundError) as caught:
        await gateway.sdk(KEY_B).chat.completions.create(model=name, messages=HELLO)
    assert caught.value.code == "model_not_found"


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ({"logit_bias": {"fifty": -100}}, "logit_bias"),
        ({"logit_bias": {"-1": 5}}, "logit_bias"),
        ({"logit_bias": {"50256": -101}}, "logit_bias"),
        ({"frequency_penalty": 2.5}, "frequency_penalty"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"modalities": ["text", "audio"]}, "audio"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"temperature": 3}, "temperature"),
        ({"n": 0}, "n"),
        ({"max_token": 5}, "max_token"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x"}}]}
                ]
            },
            "messages[0].content[0]",
        ),
        # what OpenAI refuses (each once generated a 200)
        ({"messages": [{"role": "user", "content": None}]}, "messages[0].content"),
        ({"messages": [{"role": "tool"}]}, "messages[0].content"),
        ({"messages": [{"role": "tool", "content": "42"}]}, "messages[0].tool_call_id"),
        ({"tools": [{"type": "nope"}]}, "tools[0].type"),
        ({"tools": [{"type": "function", "function": {"parameters": {}}}]}, "tools[0].function.name"),
    ],
)
async def test_what_cannot_be_honoured_is_a_400_naming_it(gateway: Gateway, extra: dict, param: str) -> None:
    async with gateway.http() as http:
        response = await http.post(
            "/v1/chat/completions", json={"model": BASE_MODEL, "messages": HELLO, **extra}
        )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param
    assert gateway.fakes.inference.requests == []


async def test_an_assistant_turn_that_only_calls_a_tool_needs_no_content(gateway: Gateway) -> None:
    messages = [
        {"role": "user", "content": "What is 6 x 7?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "mul", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "42"},
    ]
    async with gateway.http() as http:
        response = await http.post("/v1/chat/completions", json={"model": BASE_MODEL, "messages": messages})
    assert response.status_code == 200, response.text


async def test_parameters_openai_would_answer_anyway_are_ignored(gateway: Gateway) -> None:
    answer = await gateway.sdk().chat.completions.create(
        model=BASE_MODEL,
        messages=HELLO,
        parallel_tool_calls=False,
        store=False,
        service_tier="auto",
        reasoning_effort="low",
        response_format={"type": "text"},
        tool_choice="auto",
        logprobs=False,
        prompt_cache_key="k",
        safety_identifier="s",
    )
    assert answer.choices[0].message.content == "Ahoy from Tailor"


async def test_unknown_model_is_404_before_streaming(gateway: Gateway) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        await gateway.sdk().chat.completions.create(model="gpt-4o", messages=HELLO, stream=True)
    assert caught.value.code == "model_not_found"


async def test_a_failure_before_the_first_token_is_a_plain_http_error(gateway: Gateway) -> None:
    gateway.fakes.inference.mode = "fail_first"
    with pytest.raises(openai.InternalServerError) as caught:
        await gateway.sdk().chat.completions.create(model=BASE_MODEL, messages=HELLO, stream=True)
    assert caught.value.status_code == 503
    assert "restarting" not in caught.value.message  # upstream details stay in the log


async def test_a_failure_midway_is_an_error_event(gateway: Gateway) -> None:
    gateway.fakes.inference.mode = "fail_midway"
    stream = await gateway.sdk().chat.completions.create(model=BASE_MODEL, messages=HELLO, stream=True)
    received = []
    with pytest.raises(openai.APIError) as caught:
        async for chunk in stream:
            received.append(chunk)
    assert not isinstance(caught.value, openai.APIStatusError)
    assert received and received[0].choices[0].delta.role == "assistant"
    async with gateway.http() as http:
        raw = await http.post(
            "/v1/chat/completions", json={"model": BASE_MODEL, "messages": HELLO, "stream": True}
        )
    last = json.loads(sse_payloads(raw.text)[-1])
    assert last["error"]["type"] == "server_error" and "[DONE]" not in raw.text


async def test_a_client_that_leaves_a_stream_cancels_generation_upstream(gateway: Gateway) -> None:
    inference = gateway.fakes.inference
    inference.mode = "hang"
    async with gateway.http() as http:
        request = {"model": BASE_MODEL, "messages": HELLO, "stream": True}
        async with http.stream("POST", "/v1/chat/completions", json=request) as response:
            async for line in response.aiter_lines():
                if '"content":"Ahoy"' in line:
                    break  # leave after the first token; closing the response drops the connection
    await asyncio.wait_for(inference.cancelled.wait(), timeout=5)


async def test_a_client_that_leaves_a_plain_request_cancels_generation_upstream(gateway: Gateway) -> None:
    inference = gateway.fakes.inference
    inference.mode = "hang"
    async with gateway.http() as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.post(
                "/v1/chat/completions",
                json={"model": BASE_MODEL, "messages": HELLO},
                timeout=httpx.Timeout(0.5),
            )
    await asyncio.wait_for(inference.cancelled.wait(), timeout=5)


async def test_text_completions_plain_streamed_and_echoed(gateway: Gateway) -> None:
    client = gateway.sdk()
    completion = await client.completions.create(model=BASE_MODEL, prompt="Once upon", echo=True)
    assert completion.object == "text_completion" and completion.id.startswith("cmpl-")
    assert completion.choices[0].text == "Once uponAhoy from Tailor"
    assert completion.usage is not None and completion.usage.total_tokens == 7 + 3
    sent = gateway.fakes.inference.requests[-1]
    assert sent.prompt == "Once upon" and sent.sampling.max_tokens == 16  # OpenAI's default here

    stream = await client.completions.create(
        model=BASE_MODEL, prompt=["Once upon"], stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    assert all(c.object == "text_completion" for c in chunks)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "Ahoy from Tailor"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        "stop"
    ]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"prompt": ["a", "b"]}, "prompt"),
        ({"prompt": [1, 2, 3]}, "prompt"),
        ({"logprobs": 1, "echo": True}, "logprobs"),
        ({"logprobs": 6}, "logprobs"),
        ({"presence_penalty": -3}, "presence_penalty"),
        ({"suffix": "end"}, "suffix"),
        ({"best_of": 3}, "best_of"),
    ],
)
async def test_text_completion_refusals(gateway: Gateway, extra: dict, param: str) -> None:
    async with gateway.http() as http:
        response = await http.post("/v1/completions", json={"model": BASE_MODEL, "prompt": "x", **extra})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


def test_finish_reasons_cover_the_contract() -> None:
    assert set(FINISH_REASONS) == {v for v in inference_pb.FinishReason.values() if v}
