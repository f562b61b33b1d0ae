"""Chat completions: resolve the model in the caller's organization, generate, answer as OpenAI.

The model name is resolved through the registry, its answer kept for a moment
(:mod:`services.gateway.models.resolved`): a model deleted through this gateway is a 404 here
at once, one deleted through another replica within ``TAILOR_GATEWAY_MODEL_CACHE_TTL_S``.

Streaming follows docs/research/openai_api.md §1.5 to the letter: a first chunk per choice carrying
``role``, content deltas by choice ``index``, exactly one ``finish_reason`` per choice on
an empty delta, the usage chunk with ``choices: []`` only when
``stream_options.include_usage`` asks, then ``data: [DONE]`` and the end of the body (see
:func:`services.gateway.sse.completion_events`). A tool call is one ``delta.tool_calls``
entry, whole: its ``index`` (the call's position in the choice), ``id``, ``type``,
``function.name`` and all of ``function.arguments`` in one piece, as the SDK's accumulator
takes it; a choice that made calls finishes with ``tool_calls``. With ``logprobs``, a content
chunk carries its tokens' log probabilities in ``choices[].logprobs.content`` (text can lag
behind tokens, so such a chunk may have empty content). A client that disconnects cancels the
stream, and with it the gRPC call, which stops generation upstream.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from fastapi import Request

from services.common.ids import new_id
from services.gateway import sse
from services.gateway.auth import Caller
from services.gateway.chat.protocol import (
    AssistantMessage,
    ChatChoice,
    ChatCompletion,
    ChatCompletionRequest,
    FunctionCall,
    ToolCall,
    Usage,
)
from services.gateway.config import GatewaySettings
from services.gateway.generation import (
    Collected,
    Generation,
    GenerationInput,
    TextDelta,
    ToolCallMade,
    collect,
    start_generation,
    unless_disconnected,
)
from services.gateway.logprobs import chat_logprobs
from services.gateway.models.protocol import system_fingerprint
from services.gateway.upstream import Upstreams
from tailor.inference.v1 import inference_service_pb2 as pb


def _chunk_choice(
    index: int,
    delta: dict[str, Any],
    finish_reason: str | None = None,
    logprobs: Sequence[pb.TokenLogprob] = (),
) -> dict[str, Any]:
    shaped = chat_logprobs(logprobs) if logprobs else None
    return {"index": index, "delta": delta, "logprobs": shaped, "finish_reason": finish_reason}


def _tool_call_choice(call: ToolCallMade) -> dict[str, Any]:
    """A whole call in one delta: the first piece of a call carries id, type and name, and here all of it."""
    entry = {
        "index": call.position,
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments},
    }
    return _chunk_choice(call.index, {"tool_calls": [entry]})


class _OpenAtOnce:
    """Chunks of a stream that answers in text: each choice opens with ``role`` before any text."""

    def opening(self, choices: int) -> list[dict[str, Any]]:
        role = {"role": "assistant", "content": "", "refusal": None}
        return [_chunk_choice(index, role) for index in range(choices)]

    def text(self, delta: TextDelta) -> dict[str, Any]:
        return _chunk_choice(delta.index, {"content": delta.text}, logprobs=delta.logprobs)

    def tool_call(self, call: ToolCallMade) -> dict[str, Any]:
        return _tool_call_choice(call)

    def finish(self, index: int, reason: str) -> dict[str, Any]:
        return _chunk_choice(index, {}, reason)


class _OpenWithFirstEvent(_OpenAtOnce):
    """Chunks of a stream that may answer with tool calls: each choice opens with its first event.

    OpenAI's first chunk of a choice carries ``role`` with the start of the reply:
    ``content: null`` and the first ``tool_calls`` when the reply is calls, ``content: ""``
    (then text) when it is text. Which one is known only once the inference service sends the
    choice's first event (it holds back text that may still become a call), so the role goes
    out with that event instead of before it.
    """

    _ROLE = {"role": "assistant", "refusal": None}

    def __init__(self) -> None:
        self._opened: set[int] = set()

    def _opens(self, index: int) -> bool:
        if index in self._opened:
            return False
        self._opened.add(index)
        return True

    def opening(self, choices: int) -> list[dict[str, Any]]:
        return []

    def text(self, delta: TextDelta) -> dict[str, Any]:
        opening = self._ROLE if self._opens(delta.index) else {}
        return _chunk_choice(delta.index, {**opening, "content": delta.text}, logprobs=delta.logprobs)

    def tool_call(self, call: ToolCallMade) -> dict[str, Any]:
        choice = _tool_call_choice(call)
        if self._opens(call.index):
            choice["delta"] = {**self._ROLE, "content": None, **choice["delta"]}
        return choice

    def finish(self, index: int, reason: str) -> dict[str, Any]:
        # an empty reply still says who spoke
        opening = {**self._ROLE, "content": ""} if self._opens(index) else {}
        return _chunk_choice(index, opening, reason)


def _message(text: str, calls: list[ToolCallMade]) -> AssistantMessage:
    """The whole reply; content is null when the reply is only tool calls."""
    if not calls:
        return AssistantMessage(content=text)
    return AssistantMessage(
        content=text or None,
        tool_calls=[
            ToolCall(id=call.id, function=FunctionCall(name=call.name, arguments=call.arguments))
            for call in calls
        ],
    )


def _may_call_tools(wanted: GenerationInput) -> bool:
    """Whether the reply may be tool calls: the model was shown tools (not for tool_choice none)."""
    return isinstance(wanted.prompt, pb.ChatInput) and bool(wanted.prompt.tools_json)


class OpenAIServingChat:
    """Handles ``POST /v1/chat/completions``."""

    def __init__(self, upstreams: Upstreams, settings: GatewaySettings) -> None:
        self._upstreams = upstreams
        self._settings = settings

    async def create(
        self, caller: Caller, body: ChatCompletionRequest, request: Request
    ) -> ChatCompletion | sse.GenerationStreamResponse:
        wanted = body.generation_input()  # 400s come before any upstream call
        model = await self._upstreams.resolved_models.resolve(caller, body.model)

        async def start() -> Generation:
            return await start_generation(
                self._upstreams,
                caller,
                model,
                wanted,
                timeout_s=self._settings.gateway_generation_timeout_s,
            )

        if not body.stream:

            async def complete() -> ChatCompletion:
                generation = await start()
                fingerprint = system_fingerprint(model, generation.responses.engine)
                return self._completion(body, await collect(generation), fingerprint)

            return await unless_disconnected(request, complete())

        generation = await unless_disconnected(request, start())
        chunks = _OpenWithFirstEvent() if _may_call_tools(wanted) else _OpenAtOnce()
        events = sse.completion_events(
            generation,
            envelope={
                "id": new_id("chatcmpl"),
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": body.model,
                "system_fingerprint": system_fingerprint(model, generation.responses.engine),
            },
            include_usage=body.include_usage,
            opening=chunks.opening(body.choices),
            text_choice=chunks.text,
            finish_choice=chunks.finish,
            tool_call_choice=chunks.tool_call,
        )
        return sse.GenerationStreamResponse(generation, events)

    @staticmethod
    def _completion(body: ChatCompletionRequest, collected: Collected, fingerprint: str) -> ChatCompletion:
        return ChatCompletion(
            id=new_id("chatcmpl"),
            created=int(time.time()),
            model=body.model,
            choices=[
                ChatChoice(
                    index=index,
                    message=_message(text, calls),
                    logprobs=chat_logprobs(logprobs) if body.logprobs else None,
                    finish_reason=reason,
                )
                for index, (text, calls, reason, logprobs) in enumerate(
                    zip(
                        collected.texts,
                        collected.tool_calls,
                        collected.finish_reasons,
                        collected.logprobs,
                        strict=True,
                    )
                )
            ],
            usage=Usage(**collected.usage.as_dict()),
            system_fingerprint=fingerprint,
        )
