"""The inference service's logic, between the gRPC servicer and the engine, the same for both engines.

A generation: check the base model, render the input to token ids, validate sampling
against the context length, resolve the adapter's model name in the caller's organization
through the model registry (:mod:`services.inference.registry`: a caller names a model,
never a location), hold the adapter in the engine (fetching it on first use),
stream the engine's deltas, and finish with usage. When a chat request carries tools, each
choice's text goes through the replica's tool-call parser (:mod:`services.inference.tool_calls`,
in the format the base model's template writes calls in): the deltas then carry content and
complete tool calls, and a choice that made a call finishes with ``tool_calls``. Such a request
has the engine keep the format's markers that are special tokens (Mistral's ``[TOOL_CALLS]``)
in its text, which engines otherwise skip with every special token. On the way it
records the metrics and the waiting/running counts, and when the caller goes away (cancel,
deadline) closing the engine's stream aborts the request, which frees its batch slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from services.common.errors import InvalidArgument, NotFound
from services.common.model_families import ToolCallFormat
from services.common.not_found import model_not_found
from services.common.tenancy import current_organization
from services.inference import metrics
from services.inference.adapters import AdapterCache, AdapterRef, AdapterStatus, engine_adapter_id
from services.inference.engine import ChoiceDelta, Engine, GenerationRequest
from services.inference.registry import AdapterResolver
from services.inference.rendering import PromptRenderer
from services.inference.request_tracker import RequestTracker
from services.inference.sampling import validate_sampling
from services.inference.tool_calls import ToolCallStream, special_markers


# How SentencePiece vocabularies write a word's leading space.
SENTENCEPIECE_SPACE = "\u2581"


@dataclass(frozen=True)
class Conversation:
    """Chat messages (OpenAI's dict shape) and tool definitions as a JSON array string."""

    messages: Sequence[Mapping[str, Any]]
    tools_json: str = ""


@dataclass(frozen=True)
class SamplingRequest:
    """Sampling parameters as asked for; None means not given."""

    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    n: int | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    logit_bias: Mapping[int, float] = field(default_factory=dict)
    top_logprobs: int | None = None


@dataclass(frozen=True)
class TokenCounts:
    """Token counts of a whole request."""

    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class CompletionChunk:
    """One message of a generation stream: choice deltas, or the final usage."""

    deltas: list[ChoiceDelta] = field(default_factory=list)
    usage: TokenCounts | None = None


@dataclass(frozen=True)
class AdapterReport:
    """An adapter's place in this replica and its current load."""

    status: AdapterStatus
    running_requests: int
    waiting_requests: int


class InferenceService:
    """Generation and adapter management on one base model; see the module docstring."""

    def __init__(
        self,
        *,
        base_model: str,
        engine: Engine,
        renderer: PromptRenderer,
        adapters: AdapterCache,
        tracker: RequestTracker,
        tool_call_format: ToolCallFormat | None = None,
        resolver: AdapterResolver | None = None,
    ) -> None:
        self.base_model = base_model
        self.engine = engine
        self.renderer = renderer
        self.adapters = adapters
        self.tracker = tracker
        # What a model name stands for in an organization; None: this service serves no adapters.
        self.resolver = resolver
        # How the base model writes tool calls; None: replies stay text even with tools.
        self.tool_call_format = tool_call_format
        # Its markers that are special tokens: the engine keeps them in the text of a request
        # with tools (every other special token is still skipped), or the parser never sees them.
        self.tool_call_tokens = (
            special_markers(tool_call_format, renderer.tokenizer) if tool_call_format else frozenset()
        )

    async def generate(
        self,
        *,
        base_model: str,
        adapter: str | None,
        conversation: Conversation | None = None,
        prompt: str | None = None,
        sampling: SamplingRequest | None = None,
    ) -> AsyncIterator[CompletionChunk]:
        """Stream the completion of ``conversation`` or ``prompt``; the last chunk carries usage only.

        ``adapter`` is a model name of the caller's organization (None: the bare base model).
        """
        sampling = sampling or SamplingRequest()
        arrived = time.perf_counter()
        organization = current_organization()
        outcome = "failed"
        completion_tokens = 0
        tracked_as = engine_adapter_id(organization, adapter) if adapter else None
        with self.tracker.track(tracked_as) as tracked:
            try:
                self._check_base_model(base_model)
                prompt_ids, prompt_param = self._render(conversation, prompt)
                settings = validate_sampling(
                    temperature=sampling.temperature,
                    top_p=sampling.top_p,
                    max_tokens=sampling.max_tokens,
                    stop=sampling.stop,
                    seed=sampling.seed,
                    n=sampling.n,
                    prompt_tokens=len(prompt_ids),
                    max_model_len=self.engine.max_model_len,
                    prompt_param=prompt_param,
                    frequency_penalty=sampling.frequency_penalty,
                    presence_penalty=sampling.presence_penalty,
                    logit_bias=sampling.logit_bias,
                    top_logprobs=sampling.top_logprobs,
                    vocab_size=self.engine.vocab_size,
                )
                metrics.PROMPT_TOKENS.inc(len(prompt_ids))
                tool_calls = self._tool_call_parser(conversation)
                async with self._adapter_held(adapter, organization) as engine_adapter:
                    request = GenerationRequest(
                        request_id=f"cmpl-{uuid.uuid4().hex}",
                        prompt_token_ids=tuple(prompt_ids),
                        sampling=settings,
                        adapter=engine_adapter,
                        keep_special_tokens=self.tool_call_tokens if tool_calls is not None else frozenset(),
                    )
                    last_token_at: float | None = None
                    async with contextlib.aclosing(self.engine.generate(request)) as stream:
                        async for deltas in stream:
                            tokens = sum(delta.token_count for delta in deltas)
                            if tokens:
                                now = time.perf_counter()
                                _observe_latency(arrived, last_token_at, now, deltas)
                                tracked.started()
                                last_token_at = now
                                completion_tokens += tokens
                            if tool_calls is not None:
                                deltas = [tool_calls.parse(delta) for delta in deltas]
                            # Deltas whose text is held back (stop strings, partial characters, a
                            # tool call still open) say nothing yet, unless they carry logprobs.
                            visible = [
                                d for d in deltas if d.text or d.finish_reason or d.tool_calls or d.logprobs
                            ]
                            if visible:
                                yield CompletionChunk(deltas=visible)
                yield CompletionChunk(usage=TokenCounts(len(prompt_ids), completion_tokens))
                outcome = "completed"
            except (asyncio.CancelledError, GeneratorExit):
                outcome = "cancelled"
                raise
            finally:
                metrics.REQUESTS.labels(outcome).inc()
                metrics.GENERATION_TOKENS.inc(completion_tokens)

    async def load_adapter(self, name: str) -> AdapterReport:
        """Fetch and load the organization's adapter of model ``name`` ahead of use."""
        organization = current_organization()
        ref = await self._resolve(name, organization)
        return self._report(await self.adapters.load(ref, organization))

    async def unload_adapter(self, name: str) -> bool:
        """Take the organization's adapter out of this replica; False if it did not hold it."""
        organization = current_organization()
        if self.resolver is not None:
            self.resolver.forget(organization, name)
        return await self.adapters.unload(name, organization)

    def list_adapters(self) -> list[AdapterReport]:
        """The organization's adapters in this replica, most recently used first."""
        return [self._report(status) for status in self.adapters.list(current_organization())]

    def token_text(self, token_id: int) -> str:
        """A generated token as its log probabilities name it (see :func:`token_text`)."""
        return token_text(self.renderer.tokenizer, token_id)

    def _report(self, status: AdapterStatus) -> AdapterReport:
        running, waiting = self.tracker.counts(status.engine_id)
        return AdapterReport(status, running, waiting)

    def _check_base_model(self, base_model: str) -> None:
        if base_model != self.base_model:
            raise InvalidArgument(
                f"The model `{base_model}` is not served by this replica, which serves `{self.base_model}`.",
                param="model",
                code="model_not_found",
            )

    def _tool_call_parser(self, conversation: Conversation | None) -> _ToolCallParser | None:
        """A parser for the request's choices when it is a chat with tools and the model has a format."""
        if conversation is None or not conversation.tools_json or self.tool_call_format is None:
            return None
        return _ToolCallParser(self.tool_call_format)

    def _render(self, conversation: Conversation | None, prompt: str | None) -> tuple[list[int], str]:
        if conversation is not None:
            return self.renderer.render_chat(conversation.messages, conversation.tools_json), "messages"
        if prompt is not None:
            return self.renderer.render_prompt(prompt), "prompt"
        raise InvalidArgument("either chat messages or a prompt is required", param="messages")

    async def _resolve(self, name: str, organization: str) -> AdapterRef:
        """The registry's adapter for the organization's model ``name``; NOT_FOUND otherwise.

        A model the registry no longer knows (deleted) that this replica still holds is
        unloaded here, so it stops being served even if the gateway's unload never came.
        """
        if not name:
            raise InvalidArgument("adapter.name must not be empty", param="model")
        if self.resolver is None:
            raise model_not_found(name)
        try:
            return await self.resolver.resolve(organization, name)
        except NotFound:
            await self.adapters.unload(name, organization)
            raise

    @contextlib.asynccontextmanager
    async def _adapter_held(self, adapter: str | None, organization: str) -> AsyncIterator[str | None]:
        if adapter is None:
            yield None
            return
        ref = await self._resolve(adapter, organization)
        async with self.adapters.use(ref, organization) as engine_id:
            yield engine_id


@dataclass
class _ToolCallParser:
    """One request's choices through the tool-call parser, one stream per choice."""

    tool_format: ToolCallFormat
    streams: dict[int, ToolCallStream] = field(default_factory=dict)

    def parse(self, delta: ChoiceDelta) -> ChoiceDelta:
        """``delta``'s text as content and complete calls; a choice that made calls ends in tool_calls."""
        stream = self.streams.get(delta.index)
        if stream is None:
            stream = self.streams[delta.index] = ToolCallStream(self.tool_format)
        parsed = stream.push(delta.text) if delta.text else None
        content = parsed.content if parsed else ""
        calls = parsed.tool_calls if parsed else ()
        finish_reason = delta.finish_reason
        if finish_reason is not None:
            last = stream.finish()
            content, calls = content + last.content, calls + last.tool_calls
            if stream.called:
                finish_reason = "tool_calls"
        return dataclasses.replace(delta, text=content, tool_calls=calls, finish_reason=finish_reason)


def token_text(tokenizer: Any, token_id: int) -> str:
    """A token as log probabilities show it: the tokenizer decoding its id alone.

    SentencePiece tokenizers drop a word's leading space when a token is decoded alone;
    it is put back (as vLLM's ``convert_ids_list_to_tokens`` does), so that a choice's
    tokens spell its text.
    """
    text = tokenizer.decode([token_id])
    piece = tokenizer.convert_ids_to_tokens(token_id)
    if isinstance(piece, str) and piece.startswith(SENTENCEPIECE_SPACE) and not text.startswith(" "):
        text = " " + text
    return text


def _observe_latency(
    arrived: float, last_token_at: float | None, now: float, deltas: list[ChoiceDelta]
) -> None:
    """TTFT at the first token; otherwise the gap, spread over the tokens each choice got in it."""
    if last_token_at is None:
        metrics.TIME_TO_FIRST_TOKEN.observe(now - arrived)
        return
    # A slow consumer can receive several steps at once (vLLM merges deltas): count per token.
    steps = max(delta.token_count for delta in deltas)
    for _ in range(steps):
        metrics.INTER_TOKEN_LATENCY.observe((now - last_token_at) / steps)
