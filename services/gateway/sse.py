"""Server-sent events as the OpenAI SDK reads them (docs/research/openai_api.md §1.5), for chat and text
completions.

One JSON object per ``data:`` line, each event ended by a blank line; ``data: [DONE]``
ends the stream, after which the response is closed (SDK 1.x reads to EOF). An error
after the stream started is one ``data: {"error": {...}}`` event, which the SDK raises
as ``openai.APIError``.

Events are written as they come, but never one write per event when several are ready:
a reader task turns the generation into encoded events while the response writes
whatever has accumulated since its last write in one piece (after one turn of the event
loop, so that messages that reached the gateway together leave it together). A client or
gateway that keeps up gets every token at once; one that falls behind gets fewer, larger
writes instead of a growing queue of small ones (a socket write costs more than encoding a
chunk).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import msgspec
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from services.gateway.errors import from_rpc_error, internal_error
from services.gateway.generation import ChoiceFinished, Generation, TextDelta, ToolCallMade

MEDIA_TYPE = "text/event-stream"
DONE = b"data: [DONE]\n\n"
# Proxies (nginx) buffer responses unless told not to; caches must not keep a stream.
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

Choice = dict[str, Any]


# Compact UTF-8 JSON, several times faster than json.dumps for the small dicts of a chunk
# (the gateway encodes one per token). Floats come out in their shortest exact form.
_json = msgspec.json.Encoder().encode


def event(payload: dict[str, Any]) -> bytes:
    """One ``data:`` event. Compact JSON never contains a newline, so one line is always enough."""
    return b"data: " + _json(payload) + b"\n\n"


class ChunkEncoder:
    """Encodes the chunks of one stream; the fields every chunk repeats are encoded once.

    A chunk is ``{**envelope, "choices": [...]}``, plus ``"usage"`` (null but in the last
    chunk) when the client asked for usage.
    """

    def __init__(self, envelope: dict[str, Any], include_usage: bool) -> None:
        self._head = b"data: " + _json(envelope)[:-1] + b',"choices":'
        self._include_usage = include_usage

    def encode(self, choices: list[Choice], usage: dict[str, int] | None = None) -> bytes:
        tail = b',"usage":' + _json(usage) + b"}\n\n" if self._include_usage else b"}\n\n"
        return self._head + _json(choices) + tail


async def completion_events(
    generation: Generation,
    *,
    envelope: dict[str, Any],
    include_usage: bool,
    opening: list[Choice],
    text_choice: Callable[[TextDelta], Choice],
    finish_choice: Callable[[int, str], Choice],
    tool_call_choice: Callable[[ToolCallMade], Choice] | None = None,
) -> AsyncIterator[bytes]:
    """The body of a streamed completion: one choice per chunk, in the shape the callables give.

    ``envelope`` holds the fields every chunk repeats (id, object, created, model);
    ``opening`` the choices sent before any text (chat's role deltas, an echoed prompt);
    ``tool_call_choice`` the chunk of a tool call (chat only: text completions have none).
    With ``include_usage`` a last chunk with ``choices: []`` carries the totals. Ends with
    ``[DONE]``, or an error event when generation fails midway. Leaving early (a client
    that disconnected) cancels generation upstream.
    """
    encoder = ChunkEncoder(envelope, include_usage)
    pending: list[bytes] = [encoder.encode([choice]) for choice in opening]
    ready = asyncio.Event()
    finished = False

    async def read() -> None:
        nonlocal finished
        try:
            async for generated in generation.events():
                if isinstance(generated, TextDelta):
                    pending.append(encoder.encode([text_choice(generated)]))
                elif isinstance(generated, ToolCallMade):
                    if tool_call_choice is not None:
                        pending.append(encoder.encode([tool_call_choice(generated)]))
                elif isinstance(generated, ChoiceFinished):
                    pending.append(encoder.encode([finish_choice(generated.index, generated.reason)]))
                elif include_usage:
                    pending.append(encoder.encode([], generated.as_dict()))
                ready.set()
            pending.append(DONE)
        except grpc.aio.AioRpcError as error:
            # the 200 and some text are already out: the error can only be an event now
            pending.append(event(from_rpc_error(error).body()))
        except Exception:
            pending.append(event(internal_error().body()))
        finally:
            finished = True
            ready.set()

    reader = asyncio.create_task(read())
    try:
        while True:
            await ready.wait()
            # one turn of the loop lets the reader take the messages that arrived together
            await asyncio.sleep(0)
            ready.clear()
            if pending:
                batch = b"".join(pending)
                pending.clear()
                yield batch
            if finished and not pending:
                return
    finally:
        reader.cancel()
        generation.cancel()


class GenerationStreamResponse(StreamingResponse):
    """The SSE response of a started generation, which it ends however the response ends.

    :func:`completion_events` cancels the generation when its body stops early, but a client
    that leaves before Starlette starts iterating the body never runs the body at all: the
    gRPC call would go on generating for nobody until its deadline, holding its replica's
    place in the router's in-flight count.

    A client that leaves mid-stream is noticed as Starlette does it, but more cheaply: under a
    server of ASGI 2.4 a write fails (Starlette's own path); under older ones (uvicorn says
    2.3) only ``receive`` tells, and where Starlette listens for it in an anyio task group
    (about 3% of the gateway's CPU per stream, in its cancel scopes and task names), one
    asyncio task here cancels the generation, whose body then ends by itself.
    """

    def __init__(self, generation: Generation, body: AsyncIterator[bytes]) -> None:
        super().__init__(body, media_type=MEDIA_TYPE, headers=HEADERS)
        self._generation = generation

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            spec = scope.get("asgi", {}).get("spec_version", "2.0")
            if tuple(map(int, spec.split("."))) >= (2, 4):
                await super().__call__(scope, receive, send)
                return
            watcher = asyncio.create_task(self._cancel_when_client_leaves(receive))
            try:
                await self.stream_response(send)
            finally:
                watcher.cancel()
        finally:
            self._generation.cancel()

    async def _cancel_when_client_leaves(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self._generation.cancel()
