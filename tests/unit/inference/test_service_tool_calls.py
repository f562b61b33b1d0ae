"""The inference service parses tool calls above the engine: only for a chat with tools, per choice."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from services.common.tenancy import call_context
from services.inference.engine import ChoiceDelta, Engine, EngineLoad, GenerationRequest
from services.inference.rendering import PromptRenderer
from services.inference.request_tracker import RequestTracker
from services.inference.service import CompletionChunk, Conversation, InferenceService

TOOLS = json.dumps([{"type": "function", "function": {"name": "get_weather", "parameters": {}}}])
CALL_TEXT = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Lisbon"}}\n</tool_call>'
MESSAGES = [{"role": "user", "content": "Weather in Lisbon?"}]


class ScriptedEngine(Engine):
    """Answers every request with the same pieces of text, per choice, a few characters a step."""

    kind = "hf"
    max_model_len = 2048
    vocab_size = 32768
    adapter_capacity = 1

    def __init__(self, replies: list[str], step: int = 5) -> None:
        self.replies, self.step = replies, step

    async def generate(self, request: GenerationRequest) -> AsyncIterator[list[ChoiceDelta]]:
        longest = max(len(reply) for reply in self.replies)
        for start in range(0, longest, self.step):
            end = start + self.step
            yield [
                ChoiceDelta(index, reply[start:end], 1, "stop" if end >= len(reply) else None)
                for index, reply in enumerate(self.replies)
                if start < len(reply)
            ]

    async def add_adapter(self, name: str, directory: Path) -> None:
        raise NotImplementedError

    async def remove_adapter(self, name: str) -> None:
        raise NotImplementedError

    def load(self) -> EngineLoad:
        return EngineLoad(0, 0)

    async def check_health(self) -> None:
        return None

    async def close(self) -> None:
        return None


def generate(
    tokenizer: Any, engine: Engine, *, tools_json: str, tool_call_format: Any = "hermes"
) -> list[CompletionChunk]:
    service = InferenceService(
        base_model="tailor-tiny",
        engine=engine,
        renderer=PromptRenderer(tokenizer),
        adapters=None,  # type: ignore[arg-type]  # no adapter is asked for
        tracker=RequestTracker(),
        tool_call_format=tool_call_format,
    )

    async def run() -> list[CompletionChunk]:
        with call_context("org-a", None):
            return [
                chunk
                async for chunk in service.generate(
                    base_model="tailor-tiny", adapter=None, conversation=Conversation(MESSAGES, tools_json)
                )
            ]

    return asyncio.run(run())


def per_choice(chunks: list[CompletionChunk]) -> dict[int, tuple[str, list[Any], list[str]]]:
    """Each choice's text, calls (name, arguments) and finish reasons over the stream."""
    choices: dict[int, tuple[str, list[Any], list[str]]] = {}
    for chunk in chunks:
        for delta in chunk.deltas:
            text, calls, finishes = choices.setdefault(delta.index, ("", [], []))
            calls.extend((call.name, json.loads(call.arguments)) for call in delta.tool_calls)
            finishes.extend([delta.finish_reason] if delta.finish_reason else [])
            choices[delta.index] = (text + delta.text, calls, finishes)
    return choices


def test_a_chat_with_tools_gets_calls_and_the_tool_calls_finish(tokenizer: Any) -> None:
    chunks = generate(tokenizer, ScriptedEngine([CALL_TEXT, "It is sunny."]), tools_json=TOOLS)
    assert per_choice(chunks) == {
        0: ("", [("get_weather", {"city": "Lisbon"})], ["tool_calls"]),
        1: ("It is sunny.", [], ["stop"]),
    }
    assert chunks[-1].usage is not None and not chunks[-1].deltas
    # held text produces no empty deltas
    assert all(d.text or d.tool_calls or d.finish_reason for chunk in chunks for d in chunk.deltas)


@pytest.mark.parametrize(("tools_json", "tool_call_format"), [("", "hermes"), (TOOLS, None)])
def test_without_tools_or_without_a_format_the_reply_is_text(
    tokenizer: Any, tools_json: str, tool_call_format: Any
) -> None:
    chunks = generate(
        tokenizer, ScriptedEngine([CALL_TEXT]), tools_json=tools_json, tool_call_format=tool_call_format
    )
    assert per_choice(chunks) == {0: (CALL_TEXT, [], ["stop"])}


def test_an_unparseable_call_is_text_with_the_engines_finish(tokenizer: Any) -> None:
    broken = "<tool_call>\n{not json}\n</tool_call>"
    chunks = generate(tokenizer, ScriptedEngine([broken], step=3), tools_json=TOOLS)
    assert per_choice(chunks) == {0: (broken, [], ["stop"])}


class RecordingEngine(ScriptedEngine):
    """A ScriptedEngine that keeps the requests it was given."""

    def __init__(self, replies: list[str]) -> None:
        super().__init__(replies)
        self.requests: list[GenerationRequest] = []

    async def generate(self, request: GenerationRequest) -> AsyncIterator[list[ChoiceDelta]]:
        self.requests.append(request)
        async for deltas in super().generate(request):
            yield deltas


MISTRAL_CALL = '[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Lisbon"}}]'


def test_a_request_with_tools_has_the_engine_keep_the_special_markers(mistral_tokenizer: Any) -> None:
    engine = RecordingEngine([MISTRAL_CALL])
    chunks = generate(mistral_tokenizer, engine, tools_json=TOOLS, tool_call_format="mistral")
    assert engine.requests[-1].keep_special_tokens == {"[TOOL_CALLS]"}
    assert per_choice(chunks) == {0: ("", [("get_weather", {"city": "Lisbon"})], ["tool_calls"])}
    generate(mistral_tokenizer, engine, tools_json="", tool_call_format="mistral")
    assert engine.requests[-1].keep_special_tokens == frozenset(), "without tools, decoding is unchanged"


def test_markers_that_are_not_special_tokens_need_no_keeping(tokenizer: Any) -> None:
    engine = RecordingEngine([CALL_TEXT])
    generate(tokenizer, engine, tools_json=TOOLS, tool_call_format="hermes")
    assert engine.requests[-1].keep_special_tokens == frozenset()
