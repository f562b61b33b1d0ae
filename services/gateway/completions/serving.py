"""Text completions: the chat flow's model resolution and generation, answered in the legacy shape.

Streamed chunks have the same shape as the whole answer (``object: "text_completion"``),
one choice each; a choice's end is a chunk with empty ``text`` and its ``finish_reason``.
``echo`` puts the prompt before each choice's text.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import Request

from services.common.ids import new_id
from services.gateway import sse
from services.gateway.auth import Caller
from services.gateway.chat.protocol import Usage
from services.gateway.completions.protocol import Completion, CompletionChoice, CompletionRequest
from services.gateway.config import GatewaySettings
from services.gateway.generation import (
    Collected,
    Generation,
    TextDelta,
    collect,
    start_generation,
    unless_disconnected,
)
from services.gateway.logprobs import CompletionLogprobsBuilder
from services.gateway.models.protocol import system_fingerprint
from services.gateway.upstream import Upstreams


def _choice(
    index: int, text: str, finish_reason: str | None = None, logprobs: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish_reason}


class _TextChunks:
    """Streamed text choices, with each choice's log probabilities (text offsets counted on) when asked."""

    def __init__(self, choices: int, logprobs: bool) -> None:
        self._logprobs = [CompletionLogprobsBuilder() for _ in range(choices)] if logprobs else None

    def text(self, delta: TextDelta) -> dict[str, Any]:
        if self._logprobs is None:
            return _choice(delta.index, delta.text)
        return _choice(delta.index, delta.text, logprobs=self._logprobs[delta.index].shape(delta.logprobs))


class OpenAIServingCompletions:
    """Handles ``POST /v1/completions``."""

    def __init__(self, upstreams: Upstreams, settings: GatewaySettings) -> None:
        self._upstreams = upstreams
        self._settings = settings

    async def create(
        self, caller: Caller, body: CompletionRequest, request: Request
    ) -> Completion | sse.GenerationStreamResponse:
        wanted = body.generation_input()  # 400s come before any upstream call
        model = await self._upstreams.resolved_models.resolve(caller, body.model)
        echoed = body.prompt_text() if body.echo else ""

        async def start() -> Generation:
            return await start_generation(
                self._upstreams,
                caller,
                model,
                wanted,
                timeout_s=self._settings.gateway_generation_timeout_s,
            )

        if not body.stream:

            async def complete() -> Completion:
                generation = await start()
                fingerprint = system_fingerprint(model, generation.responses.engine)
                return self._completion(body, echoed, await collect(generation), fingerprint)

            return await unless_disconnected(request, complete())

        generation = await unless_disconnected(request, start())
        events = sse.completion_events(
            generation,
            envelope={
                "id": new_id("cmpl"),
                "object": "text_completion",
                "created": int(time.time()),
                "model": body.model,
                "system_fingerprint": system_fingerprint(model, generation.responses.engine),
            },
            include_usage=body.include_usage,
            opening=[_choice(index, echoed) for index in range(body.choices)] if echoed else [],
            text_choice=_TextChunks(body.choices, body.logprobs is not None).text,
            finish_choice=lambda index, reason: _choice(index, "", reason),
        )
        return sse.GenerationStreamResponse(generation, events)

    @staticmethod
    def _completion(
        body: CompletionRequest, echoed: str, collected: Collected, fingerprint: str
    ) -> Completion:
        return Completion(
            id=new_id("cmpl"),
            created=int(time.time()),
            model=body.model,
            choices=[
                CompletionChoice(
                    index=index,
                    text=echoed + text,
                    logprobs=None if body.logprobs is None else CompletionLogprobsBuilder().shape(logprobs),
                    finish_reason=reason,
                )
                for index, (text, reason, logprobs) in enumerate(
                    zip(collected.texts, collected.finish_reasons, collected.logprobs, strict=True)
                )
            ],
            usage=Usage(**collected.usage.as_dict()),
            system_fingerprint=fingerprint,
        )
