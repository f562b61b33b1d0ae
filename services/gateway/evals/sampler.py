"""The eval sampler: a background task of the gateway that answers eval runs' items with their model.

It loops: claim a batch of one run's pending items from the trainer (``ClaimEvalSamples``,
leased for ``TAILOR_GATEWAY_EVAL_SAMPLER_LEASE_S``), generate a chat completion per item
through the same path ``/v1/chat/completions`` takes once a request is parsed (the model
resolved in the run's organization, the router's replica choice, :func:`start_generation`
and :func:`collect`), at most ``TAILOR_GATEWAY_EVAL_SAMPLER_CONCURRENCY`` at once, and record
each answer as it comes (``RecordEvalSamples``; the trainer grades it). A generation that
fails, a model that does not exist or was deleted included, is that item's error, recorded
like an answer: one bad item never stops a run. When the trainer answers ``run_cancelled``,
the batch's unfinished generations are cancelled and nothing more of it is recorded.

With no work it waits ``TAILOR_GATEWAY_EVAL_SAMPLER_IDLE_S``, doubling up to
``TAILOR_GATEWAY_EVAL_SAMPLER_MAX_IDLE_S`` while the queue stays empty; a trainer that cannot
be reached is waited for the same way, and the loop goes on. Items whose record never
reached the trainer are handed out again once their lease expires. Every gateway replica
runs one sampler; the trainer's leases keep them from sampling an item twice at once.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import grpc
import structlog

from services.common.backoff import doubling_delay
from services.common.errors import TailorError
from services.gateway.auth import Caller
from services.gateway.chat.protocol import sampling_params
from services.gateway.config import GatewaySettings
from services.gateway.errors import OpenAIError, TemporarilyUnavailable, from_rpc_error, from_status
from services.gateway.evals.protocol import DEFAULT_SEED, DEFAULT_TEMPERATURE, DEFAULT_TOP_P
from services.gateway.generation import GenerationInput, collect, start_generation
from services.gateway.upstream import Upstreams
from tailor.inference.v1 import inference_service_pb2 as inference_pb
from tailor.trainer.v1 import eval_service_pb2 as pb
from tailor.trainer.v1 import eval_service_pb2_grpc as eval_grpc

log = structlog.get_logger("tailor.gateway.evals.sampler")


@dataclass(frozen=True)
class Answer:
    """What the model said to one item."""

    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int


# (the run's organization, model, the item's messages, the run's sampling parameters) -> the answer
Generate = Callable[[Caller, str, Sequence[pb.EvalMessage], pb.EvalSamplingParams], Awaitable[Answer]]


def chat_generator(upstreams: Upstreams, settings: GatewaySettings) -> Generate:
    """Generation as ``/v1/chat/completions`` does it after parsing, for one choice."""

    async def generate(
        caller: Caller, model_name: str, messages: Sequence[pb.EvalMessage], params: pb.EvalSamplingParams
    ) -> Answer:
        model = await upstreams.resolved_models.resolve(caller, model_name)
        wanted = GenerationInput(
            prompt=inference_pb.ChatInput(
                messages=[inference_pb.ChatMessage(role=m.role, content=m.content) for m in messages]
            ),
            sampling=sampling_params(
                temperature=params.temperature if params.HasField("temperature") else DEFAULT_TEMPERATURE,
                top_p=params.top_p if params.HasField("top_p") else DEFAULT_TOP_P,
                max_tokens=params.max_completion_tokens if params.HasField("max_completion_tokens") else None,
                stop=None,
                seed=params.seed if params.HasField("seed") else DEFAULT_SEED,
                n=None,
            ),
        )
        generation = await start_generation(
            upstreams, caller, model, wanted, timeout_s=settings.gateway_generation_timeout_s
        )
        collected = await collect(generation)
        return Answer(
            collected.texts[0],
            collected.finish_reasons[0],
            collected.usage.prompt_tokens,
            collected.usage.completion_tokens,
        )

    return generate


def failure_of(error: Exception) -> OpenAIError:
    """The OpenAI error a failed generation would have answered a chat completion with."""
    if isinstance(error, OpenAIError):
        return error
    if isinstance(error, grpc.aio.AioRpcError):
        return from_rpc_error(error)
    if isinstance(error, TemporarilyUnavailable):
        return error.openai_error()
    if isinstance(error, TailorError):
        return from_status(error.status_code, error.message, error.code, error.param)
    return OpenAIError(500, "The item could not be sampled.", code="sampling_failed")


# Trainer failures the sampler waits out; anything else is logged and waited out too, but louder.
_TRANSIENT = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}


class EvalSampler:
    """Claims eval items from the trainer, samples them with ``generate``, records the answers."""

    def __init__(
        self, stub: eval_grpc.EvalServiceStub, generate: Generate, settings: GatewaySettings
    ) -> None:
        self._stub = stub
        self._generate = generate
        self._settings = settings
        self._name = f"{socket.gethostname()}:{os.getpid()}"
        self._slots = asyncio.Semaphore(settings.gateway_eval_sampler_concurrency)
        self._idle_rounds = 0  # claims in a row that found no work (or no trainer)
        # observable by tests and logs: runs this sampler stopped on a cancellation
        self.cancelled_runs: list[str] = []

    async def run_forever(self) -> None:
        """The loop; ends only when cancelled (the gateway's shutdown)."""
        log.info("eval sampler started", sampler=self._name)
        while True:
            try:
                worked = await self.step()
            except Exception:  # a bug must not end sampling for every run of every organization
                log.exception("eval sampler step failed")
                worked = False
            if worked:
                self._idle_rounds = 0
            else:
                self._idle_rounds += 1
                await asyncio.sleep(self._pause(self._idle_rounds))

    async def step(self) -> bool:
        """One claim and its batch; whether there was work (False also when the trainer failed)."""
        request = pb.ClaimEvalSamplesRequest(
            sampler=self._name,
            max_items=self._settings.gateway_eval_sampler_batch,
            lease_s=self._settings.gateway_eval_sampler_lease_s,
        )
        try:
            claim: pb.ClaimEvalSamplesResponse = await self._stub.ClaimEvalSamples(request)
        except grpc.aio.AioRpcError as error:
            self._trainer_failed("claim", error)
            return False
        if not claim.tasks:
            return False
        await self.sample(claim)
        return True

    async def sample(self, claim: pb.ClaimEvalSamplesResponse) -> None:
        """Samples a claimed batch, recording answers as they come; stops at a cancellation."""
        log.info("sampling eval items", run_id=claim.run_id, model=claim.model, items=len(claim.tasks))
        pending = {asyncio.ensure_future(self._answer(claim, task)) for task in claim.tasks}
        try:
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                if not await self._record(claim.run_id, [finished.result() for finished in done]):
                    self.cancelled_runs.append(claim.run_id)
                    log.info("eval run cancelled: sampling stopped", run_id=claim.run_id)
                    return
        finally:
            for unfinished in pending:
                unfinished.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _answer(self, claim: pb.ClaimEvalSamplesResponse, task: pb.EvalSampleTask) -> pb.SampledItem:
        caller = Caller(claim.organization_id, f"{claim.run_id}/{task.item_index}")
        sample = pb.EvalSample(input=task.messages, model=claim.model)
        async with self._slots:
            try:
                answer = await self._generate(caller, claim.model, task.messages, claim.sampling_params)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # every failure is the item's, never the loop's
                failure = failure_of(error)
                if not isinstance(error, (OpenAIError, grpc.aio.AioRpcError, TailorError)):
                    log.exception("sampling an eval item failed", run_id=claim.run_id, item=task.item_index)
                sample.error_code = failure.code or failure.type
                sample.error_message = failure.message
                return pb.SampledItem(item_index=task.item_index, sample=sample)
        sample.output.append(pb.EvalMessage(role="assistant", content=answer.text))
        sample.finish_reason = answer.finish_reason
        sample.prompt_tokens = answer.prompt_tokens
        sample.completion_tokens = answer.completion_tokens
        return pb.SampledItem(item_index=task.item_index, sample=sample)

    async def _record(self, run_id: str, items: list[pb.SampledItem]) -> bool:
        """Records ``items``; False when the run was cancelled or deleted (stop sampling it).

        A trainer that cannot be reached is retried until the lease would have run out (the
        items are then handed out again anyway).
        """
        request = pb.RecordEvalSamplesRequest(run_id=run_id, items=items)
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + self._settings.gateway_eval_sampler_lease_s
        attempt = 0
        while True:
            attempt += 1
            pause_s = self._pause(attempt)
            try:
                response: pb.RecordEvalSamplesResponse = await self._stub.RecordEvalSamples(request)
                return not response.run_cancelled
            except grpc.aio.AioRpcError as error:
                if error.code() == grpc.StatusCode.NOT_FOUND:
                    return False  # the run was deleted meanwhile
                self._trainer_failed("record", error)
                if error.code() not in _TRANSIENT or loop.time() + pause_s > give_up_at:
                    return True  # the lease hands these items out again; go on with the rest
            await asyncio.sleep(pause_s)

    def _pause(self, attempt: int) -> float:
        """The wait after ``attempt`` idle claims or failed records in a row."""
        settings = self._settings
        first_s, cap_s = settings.gateway_eval_sampler_idle_s, settings.gateway_eval_sampler_max_idle_s
        return doubling_delay(attempt, first_s, cap_s)

    @staticmethod
    def _trainer_failed(what: str, error: grpc.aio.AioRpcError) -> None:
        if error.code() in _TRANSIENT:
            log.warning("eval sampler: trainer unavailable", call=what, status=error.code().name)
        else:
            log.error(
                "eval sampler: trainer refused", call=what, status=error.code().name, details=error.details()
            )
