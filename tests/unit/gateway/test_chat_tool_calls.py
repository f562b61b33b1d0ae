"""Tool calls from inference become OpenAI's ``message.tool_calls`` and streamed ``delta.tool_calls``."""

from __future__ import annotations

import json
from typing import Any

from tailor.inference.v1 import inference_service_pb2 as pb
from tests.unit.gateway.conftest import Gateway
from tests.unit.gateway.fakes import BASE_MODEL

WEATHER = [{"role": "user", "content": "Weather in Lisbon and Porto?"}]
TOOLS: Any = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
LISBON = pb.ToolCall(id="call_lisbon", name="get_weather", arguments='{"city": "Lisbon"}')
PORTO = pb.ToolCall(id="call_porto", name="get_weather", arguments='{"city": "Porto", "note": "é"}')
LISBON_JSON = {
    "id": "call_lisbon",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Lisbon"}'},
}
PORTO_JSON = {
    "id": "call_porto",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Porto", "note": "é"}'},
}


def delta(index: int, text: str = "", calls: tuple[pb.ToolCall, ...] = (), finish: int = 0) -> pb.ChoiceDelta:
    return pb.ChoiceDelta(index=index, text=text, tool_calls=list(calls), finish_reason=finish)


def script(*deltas: pb.ChoiceDelta) -> list[pb.GenerateCompletionResponse]:
    return [pb.GenerateCompletionResponse(deltas=[d]) for d in deltas]


# choice 0: only calls, in two deltas; choice 1: content, then a call; choice 2: plain text
THREE_CHOICES = script(
    delta(0, calls=(LISBON,)),
    delta(1, text="Let me check."),
    delta(2, text="It is sunny."),
    delta(0, calls=(PORTO,), finish=pb.FINISH_REASON_TOOL_CALLS),
    delta(1, calls=(PORTO,), finish=pb.FINISH_REASON_TOOL_CALLS),
    delta(2, finish=pb.FINISH_REASON_STOP),
)


def as_dicts(calls: Any) -> list[dict[str, Any]]:
    return [call.model_dump() for call in calls]


async def test_the_message_carries_tool_calls_and_null_content(gateway: Gateway) -> None:
    gateway.fakes.inference.script = THREE_CHOICES
    completion = await gateway.sdk().chat.completions.create(
        model=BASE_MODEL, messages=WEATHER, tools=TOOLS, n=3
    )
    only_calls, content_then_call, text = completion.choices
    assert only_calls.finish_reason == "tool_calls" and only_calls.message.content is None
    assert as_dicts(only_calls.message.tool_calls) == [LISBON_JSON, PORTO_JSON]
    assert content_then_call.finish_reason == "tool_calls"
    assert content_then_call.message.content == "Let me check."
    assert [c.id for c in content_then_call.message.tool_calls or ()] == ["call_porto"]
    assert text.finish_reason == "stop" and text.message.content == "It is sunny."
    assert text.message.tool_calls is None


async def test_the_wire_shape_of_a_tool_call_reply(gateway: Gateway) -> None:
    gateway.fakes.inference.script = script(delta(0, calls=(LISBON,), finish=pb.FINISH_REASON_TOOL_CALLS))
    async with gateway.http() as http:
        response = await http.post(
            "/v1/chat/completions", json={"model": BASE_MODEL, "messages": WEATHER, "tools": TOOLS}
        )
    choice = response.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None and choice["message"]["role"] == "assistant"
    (call,) = choice["message"]["tool_calls"]
    assert call == LISBON_JSON
    assert isinstance(call["function"]["arguments"], str) and json.loads(call["function"]["arguments"])


async def test_streamed_tool_calls_are_indexed_per_choice_with_one_finish_each(gateway: Gateway) -> None:
    gateway.fakes.inference.script = THREE_CHOICES
    async with gateway.http() as http:
        response = await http.post(
            "/v1/chat/completions",
            json={
                "model": BASE_MODEL,
                "messages": WEATHER,
                "tools": TOOLS,
                "n": 3,
                "stream": True,
                "stream_options": {"include_usage": True},
            },
        )
    payloads = [line.removeprefix("data: ") for line in response.text.strip().split("\n\n")]
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(p) for p in payloads[:-1]]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0  # usage last
    entries: dict[int, list[dict[str, Any]]] = {0: [], 1: [], 2: []}
    finishes: dict[int, list[str]] = {0: [], 1: [], 2: []}
    for chunk in chunks[:-1]:
        (choice,) = chunk["choices"]
        entries[choice["index"]] += choice["delta"].get("tool_calls", [])
        if choice["finish_reason"]:
            finishes[choice["index"]].append(choice["finish_reason"])
    assert entries[0] == [{"index": 0, **LISBON_JSON}, {"index": 1, **PORTO_JSON}]
    assert [e["index"] for e in entries[1]] == [0] and entries[2] == []
    assert finishes == {0: ["tool_calls"], 1: ["tool_calls"], 2: ["stop"]}
    # each choice opens, as OpenAI's do, with its first event: role and null content beside the
    # first call, role and the first text otherwise; exactly once per choice
    firsts = {}
    for chunk in chunks[:-1]:
        (choice,) = chunk["choices"]
        firsts.setdefault(choice["index"], choice["delta"])
    assert firsts[0] == {
        "role": "assistant", "refusal": None, "content": None, "tool_calls": [{"index": 0, **LISBON_JSON}]
    }
    assert firsts[1] == {"role": "assistant", "refusal": None, "content": "Let me check."}
    assert firsts[2] == {"role": "assistant", "refusal": None, "content": "It is sunny."}
    assert sum("role" in chunk["choices"][0]["delta"] for chunk in chunks[:-1]) == 3


async def test_the_sdks_stream_accumulator_rebuilds_the_calls(gateway: Gateway) -> None:
    gateway.fakes.inference.script = THREE_CHOICES
    async with gateway.sdk().chat.completions.stream(
        model=BASE_MODEL, messages=WEATHER, tools=TOOLS, n=3
    ) as stream:
        async for _ in stream:
            pass
        completion = await stream.get_final_completion()
    only_calls, content_then_call, text = completion.choices
    assert only_calls.finish_reason == "tool_calls" and only_calls.message.content is None
    calls = only_calls.message.tool_calls or ()
    assert [(c.id, c.function.name, json.loads(c.function.arguments)) for c in calls] == [
        ("call_lisbon", "get_weather", {"city": "Lisbon"}),
        ("call_porto", "get_weather", {"city": "Porto", "note": "é"}),
    ]
    assert content_then_call.message.content == "Let me check."
    assert [c.id for c in content_then_call.message.tool_calls or ()] == ["call_porto"]
    assert text.message.content == "It is sunny." and not text.message.tool_calls


async def test_an_empty_reply_to_a_request_with_tools_still_opens_with_the_role(gateway: Gateway) -> None:
    gateway.fakes.inference.script = script(delta(0, finish=pb.FINISH_REASON_STOP))
    sdk = gateway.sdk()
    async with sdk.chat.completions.stream(model=BASE_MODEL, messages=WEATHER, tools=TOOLS) as stream:
        completion = await stream.get_final_completion()
    (choice,) = completion.choices
    assert choice.message.role == "assistant" and choice.message.content == ""
    assert choice.finish_reason == "stop"


async def test_tool_choice_none_sends_no_tools_so_nothing_is_parsed(gateway: Gateway) -> None:
    sdk = gateway.sdk()
    await sdk.chat.completions.create(model=BASE_MODEL, messages=WEATHER, tools=TOOLS, tool_choice="none")
    assert gateway.fakes.inference.requests[-1].chat.tools_json == ""
    await sdk.chat.completions.create(model=BASE_MODEL, messages=WEATHER, tools=TOOLS, tool_choice="auto")
    assert json.loads(gateway.fakes.inference.requests[-1].chat.tools_json) == TOOLS


async def test_text_completions_are_unaffected(gateway: Gateway) -> None:
    completion = await gateway.sdk().completions.create(model=BASE_MODEL, prompt="Once")
    assert completion.choices[0].text == "Ahoy from Tailor" and completion.choices[0].finish_reason == "stop"
