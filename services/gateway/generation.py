"""Generation through the inference service, shared by chat and text completions.

A request's body becomes a :class:`GenerationInput` (what to continue, how to sample)
before any upstream call, so a 400 never waits on the registry. Once the registry has
resolved the model, :func:`generate_request` builds the whole ``GenerateCompletionRequest``
in one place, and :func:`start_generation` starts it through the router (adapter
affinity with fallback and in-flight accounting, :mod:`services.gateway.routing`) and
waits for its first message. Failing before that message is what lets a streamed request
still answer with a plain HTTP error (404, 400, 503) instead of a 200 stream carrying an
error event.

:meth:`Generation.events` turns the stream into per-choice events with the guarantees
OpenAI's clients rely on: text in order, tool calls numbered per choice in the order they
arrive, exactly one finish per choice, usage last.
Closing or cancelling the consumer cancels the gRPC call, which stops generation upstream
and frees the replica's place in the router's count.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from typing import TypeVar

import structlog
from fastapi import Request

from services.gateway.auth import Caller
from services.gateway.errors import OpenAIError
from services.gateway.routing import RoutedStream
from services.gateway.upstream import Upstreams
from tailor.inference.v1 import inference_service_pb2 as pb
from tailor.trainer.v1 import model_registry_service_pb2 as registry_pb

log = structlog.get_logger("tailor.gateway.generation")

T = TypeVar("T")

FINISH_REASONS = {
    pb.FINISH_REASON_STOP: "stop",
    pb.FINISH_REASON_LENGTH: "length",
    pb.FINISH_REASON_TOOL_CALLS: "tool_calls",
}


@dataclass(frozen=True)
class TextDelta:
    """New text of one choice, and the log probabilities of its new tokens when they were asked for.

    Text can lag behind tokens (see ``ChoiceDelta.logprobs``), so either may come without the other.
    """

    index: int
    text: str
    logprobs: tuple[pb.TokenLogprob, ...] = ()


@dataclass(frozen=True)
class ToolCallMade:
    """A complete tool call of one choice; ``position`` numbers its calls from 0 (OpenAI's ``index``)."""

    index: int
    position: int
    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class ChoiceFinished:
    """A choice ended: ``stop``, ``length`` or ``tool_calls``."""

    index: int
    reason: str


@dataclass(frozen=True)
class TokenCounts:
    """Token counts of the whole request."""

    prompt_tokens: int
    completion_tokens: int

    def as_dict(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }


GenerationEvent = TextDelta | ToolCallMade | ChoiceFinished | TokenCounts


@dataclass(frozen=True)
class GenerationInput:
    """What a request asks to generate, checked before the model is resolved.

    ``prompt`` is what to continue: chat messages, or raw text used as is.
    """

    prompt: pb.ChatInput | str
    sampling: pb.SamplingParams

    @property
    def choices(self) -> int:
        return self.sampling.n if self.sampling.HasField("n") else 1


def adapter_of(model: registry_pb.Model) -> pb.AdapterRef | None:
    """The adapter serving ``model``, by name; None for a base model.

    Only the name travels: the replica resolves it in the caller's organization through the
    model registry itself, and never trusts a location it is sent.
    """
    if model.kind == registry_pb.MODEL_KIND_BASE or not model.adapter_uri:
        return None
    return pb.AdapterRef(name=model.id, base_model=model.base_model)


def generate_request(model: registry_pb.Model, wanted: GenerationInput) -> pb.GenerateCompletionRequest:
    """The contract's whole request: ``wanted`` on the resolved ``model`` (its base and adapter)."""
    prompt = {"chat": wanted.prompt} if isinstance(wanted.prompt, pb.ChatInput) else {"prompt": wanted.prompt}
    return pb.GenerateCompletionRequest(
        base_model=model.base_model or model.id,
        adapter=adapter_of(model),
        sampling=wanted.sampling,
        **prompt,
    )


@dataclass
class Generation:
    """A started generation whose first message has arrived (it is the stream's first item)."""

    responses: RoutedStream
    choices: int
    _finished: set[int] = field(default_factory=set)
    _calls: dict[int, int] = field(default_factory=dict)  # tool calls per choice so far

    async def events(self) -> AsyncIterator[GenerationEvent]:
        """Text deltas and finishes as they come, then one :class:`TokenCounts`; cancels the call when closed early."""
        usage = TokenCounts(0, 0)
        try:
            async for response in self.responses:
                for delta in response.deltas:
                    if delta.index in self._finished or not 0 <= delta.index < self.choices:
                        log.warning(
                            "inference sent a delta for a finished or unknown choice", index=delta.index
                        )
                        continue
                    if delta.text or delta.logprobs:
                        yield TextDelta(delta.index, delta.text, tuple(delta.logprobs))
                    for call in delta.tool_calls:
                        position = self._calls.get(delta.index, 0)
                        self._calls[delta.index] = position + 1
                        yield ToolCallMade(delta.index, position, call.id, call.name, call.arguments)
                    if delta.finish_reason != pb.FINISH_REASON_UNSPECIFIED:
                        self._finished.add(delta.index)
                        yield ChoiceFinished(delta.index, FINISH_REASONS.get(delta.finish_reason, "stop"))
                if response.HasField("usage"):
                    usage = TokenCounts(response.usage.prompt_tokens, response.usage.completion_tokens)
        finally:
            self.cancel()
        # The contract promises a finish per choice; should a replica break it, clients
        # still get exactly one (an SDK accumulating choices waits for it).
        for index in range(self.choices):
            if index not in self._finished:
                log.warning("inference ended a choice without a finish reason", index=index)
                yield ChoiceFinished(index, "stop")
        yield usage

    def cancel(self) -> None:
        """Stops generation upstream (a no-op once the call has ended)."""
        self.responses.cancel()


@dataclass
class Collected:
    """A whole generation: each choice's text, tool calls and finish reason, and the usage."""

    texts: list[str]
    finish_reasons: list[str]
    usage: TokenCounts
    tool_calls: list[list[ToolCallMade]] = field(default_factory=list)
    # Each choice's token log probabilities, when the request asked for them.
    logprobs: list[list[pb.TokenLogprob]] = field(default_factory=list)


async def collect(generation: Generation) -> Collected:
    """Reads a generation to its end (the non-streamed answer)."""
    parts: list[list[str]] = [[] for _ in range(generation.choices)]
    calls: list[list[ToolCallMade]] = [[] for _ in range(generation.choices)]
    logprobs: list[list[pb.TokenLogprob]] = [[] for _ in range(generation.choices)]
    finish_reasons = ["stop"] * generation.choices
    usage = TokenCounts(0, 0)
    async for event in generation.events():
        if isinstance(event, TextDelta):
            parts[event.index].append(event.text)
            logprobs[event.index].extend(event.logprobs)
        elif isinstance(event, ToolCallMade):
            calls[event.index].append(event)
        elif isinstance(event, ChoiceFinished):
            finish_reasons[event.index] = event.reason
        else:
            usage = event
    return Collected(
        texts=["".join(p) for p in parts],
        finish_reasons=finish_reasons,
        usage=usage,
        tool_calls=calls,
        logprobs=logprobs,
    )


async def start_generation(
    upstreams: Upstreams,
    caller: Caller,
    model: registry_pb.Model,
    wanted: GenerationInput,
    *,
    timeout_s: float,
) -> Generation:
    """Starts ``wanted`` on ``model`` and waits for its first message; failures so far raise."""
    request = generate_request(model, wanted)
    adapter = request.adapter.name if request.HasField("adapter") else None
    # The organization travels on every attempt, a fallback's included. An adapter deleted
    # since the registry answered is the inference service's model_not_found.
    with caller.rpc_context():
        responses = await upstreams.inference.open_stream(
            request.base_model, adapter, lambda stub: stub.GenerateCompletion(request, timeout=timeout_s)
        )
    return Generation(responses=responses, choices=wanted.choices)


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Awaits ``work``, cancelling it if the client disconnects first (its generation then stops too)."""
    task = asyncio.ensure_future(work)

    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        client_left = not task.done()
        if client_left:
            task.cancel()
    if client_left:
        # nobody is left to read this; it names the outcome in the access log
        raise OpenAIError(499, "The client closed the request before the completion was ready.")
    return task.result()
