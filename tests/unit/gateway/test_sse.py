"""The SSE response of a generation ends the generation however the response ends."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from starlette.requests import ClientDisconnect
from starlette.types import Message

from services.gateway.sse import GenerationStreamResponse


class RecordingGeneration:
    """Stands in for a Generation: only whether it was cancelled matters here."""

    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


async def test_a_client_gone_before_the_body_starts_still_cancels_the_generation() -> None:
    generation = RecordingGeneration()
    body_started = False

    async def body() -> AsyncIterator[bytes]:
        nonlocal body_started
        body_started = True
        yield b"data: [DONE]\n\n"

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        raise OSError("the client closed the connection")  # what an ASGI 2.4 server raises

    response = GenerationStreamResponse(generation, body())  # type: ignore[arg-type]
    scope = {"type": "http", "asgi": {"spec_version": "2.4"}}
    with pytest.raises(ClientDisconnect):
        await response(scope, receive, send)
    # the body never ran, so its own cleanup could not have stopped the call
    assert not body_started
    assert generation.cancelled
