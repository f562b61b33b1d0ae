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
from services.gateway.generation import Collected, Generation, collect, start_generation, unless_disconnected
from services.gateway.models.serving import resolve_model
from services.gateway.upstream import Upstreams


def _choice(index: int, text: str, finish_reason: str | None = None) -> dict[str, Any]:
    return {"index": index, "text": text, "logprobs": None, "finish_reason": finish_reason}


class OpenAIServingCompletions:
    """Handles ``POST /v1/completions``."""

    def __init__(self, upstreams: Upstreams, settings: GatewaySettings) -> None:
        self._upstreams = upstreams
        self._settings = settings

    async def create(
        self, caller: Caller, body: CompletionRequest, request: Request
    ) -> Completion | sse.GenerationStreamResponse:
        wanted = body.generation_input()  # 400s come before any upstream call
        model = await resolve_model(self._upstreams, caller, body.model)
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
                return self._completion(body, echoed, await collect(await start()))

            return await unless_disconnected(request, complete())

        generation = await unless_disconnected(request, start())
        events = sse.completion_events(
            generation,
            envelope={
                "id": new_id("cmpl"),
                "object": "text_completion",
                "created": int(time.time()),
                "model": body.model,
                "system_fingerprint": None,
            },
            include_usage=body.include_usage,
            opening=[_choice(index, echoed) for index in range(body.choices)] if echoed else [],
            text_choice=_choice,
            finish_choice=lambda index, reason: _choice(index, "", reason),
        )
        return sse.GenerationStreamResponse(generation, events)

    @staticmethod
    def _completion(body: CompletionRequest, echoed: str, collected: Collected) -> Completion:
        return Completion(
            id=new_id("cmpl"),
            created=int(time.time()),
            model=body.model,
            choices=[
                CompletionChoice(index=index, text=echoed + text, finish_reason=reason)
                for index, (text, reason) in enumerate(
                    zip(collected.texts, collected.finish_reasons, strict=True)
                )
            ],
            usage=Usage(**collected.usage.as_dict()),
        )
