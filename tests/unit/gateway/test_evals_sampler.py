"""The eval sampler against a scripted trainer and a fake generation: what it records, when it stops.

The trainer here is a plain object with the two methods the sampler calls, so each test
scripts exactly the answers it needs (work, no work, UNAVAILABLE, run_cancelled) and reads
back what was recorded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

import grpc
import pytest

from services.common.errors import InvalidArgument
from services.common.not_found import model_not_found
from services.gateway.auth import Caller
from services.gateway.config import GatewaySettings
from services.gateway.errors import OpenAIError
from services.gateway.evals.sampler import Answer, EvalSampler
from tailor.trainer.v1 import eval_service_pb2 as pb

MODEL = "ft:tailor-tiny:org-a:pirate:abc123"


def settings(**overrides: object) -> GatewaySettings:
    values = {
        "api_keys": "sk-test-sampler-0001=org-a",
        "gateway_eval_sampler_idle_s": 0.01,
        "gateway_eval_sampler_max_idle_s": 0.04,
        "gateway_eval_sampler_concurrency": 2,
        "gateway_eval_sampler_batch": 4,
        **overrides,
    }
    return GatewaySettings(**values)  # type: ignore[arg-type]


def claim(items: int, run_id: str = "evalrun_1") -> pb.ClaimEvalSamplesResponse:
    return pb.ClaimEvalSamplesResponse(
        run_id=run_id,
        eval_id="eval_1",
        organization_id="org-a",
        model=MODEL,
        sampling_params=pb.EvalSamplingParams(temperature=0.2, max_completion_tokens=8),
        tasks=[
            pb.EvalSampleTask(item_index=index, messages=[pb.EvalMessage(role="user", content=f"q{index}")])
            for index in range(items)
        ],
    )


def unavailable() -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(
        grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), details="trainer restarting"
    )


@dataclass
class ScriptedTrainer:
    """Answers claims from ``claims`` (then no work), records into ``recorded``."""

    claims: list[pb.ClaimEvalSamplesResponse | Exception] = field(default_factory=list)
    records: list[pb.RecordEvalSamplesResponse | Exception] = field(default_factory=list)
    recorded: list[pb.SampledItem] = field(default_factory=list)
    claim_requests: list[pb.ClaimEvalSamplesRequest] = field(default_factory=list)
    claimed_all: asyncio.Event = field(default_factory=asyncio.Event)

    async def ClaimEvalSamples(self, request: pb.ClaimEvalSamplesRequest) -> pb.ClaimEvalSamplesResponse:
        self.claim_requests.append(request)
        if not self.claims:
            self.claimed_all.set()
            return pb.ClaimEvalSamplesResponse()
        answer = self.claims.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def RecordEvalSamples(self, request: pb.RecordEvalSamplesRequest) -> pb.RecordEvalSamplesResponse:
        answer = self.records.pop(0) if self.records else pb.RecordEvalSamplesResponse()
        if isinstance(answer, Exception):
            raise answer
        if not answer.run_cancelled:  # the trainer keeps nothing of a cancelled run
            self.recorded.extend(request.items)
        return answer


@dataclass
class FakeGeneration:
    """Answers "a<n>" to item n; items in ``failures`` raise instead; counts how many run at once."""

    failures: dict[str, Exception] = field(default_factory=dict)
    delay_s: float = 0.0
    running: int = 0
    most_at_once: int = 0
    callers: list[Caller] = field(default_factory=list)
    cancelled: int = 0
    release: asyncio.Event | None = None

    async def __call__(
        self, caller: Caller, model: str, messages: Sequence[pb.EvalMessage], params: pb.EvalSamplingParams
    ) -> Answer:
        self.callers.append(caller)
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        try:
            if self.release is not None and messages[0].content != "q0":
                await self.release.wait()
            await asyncio.sleep(self.delay_s)
            if messages[0].content in self.failures:
                raise self.failures[messages[0].content]
            return Answer("a" + messages[0].content[1:], "stop", prompt_tokens=3, completion_tokens=2)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.running -= 1


async def run_until_claimed_all(sampler: EvalSampler, trainer: ScriptedTrainer) -> None:
    task = asyncio.create_task(sampler.run_forever())
    try:
        async with asyncio.timeout(5):
            await trainer.claimed_all.wait()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_answers_are_recorded_with_tokens_for_the_runs_organization() -> None:
    trainer = ScriptedTrainer(claims=[claim(4)])
    generation = FakeGeneration(delay_s=0.01)
    sampler = EvalSampler(trainer, generation, settings())  # type: ignore[arg-type]
    await run_until_claimed_all(sampler, trainer)

    by_index = {item.item_index: item.sample for item in trainer.recorded}
    assert sorted(by_index) == [0, 1, 2, 3]
    for index, sample in by_index.items():
        assert [(m.role, m.content) for m in sample.output] == [("assistant", f"a{index}")]
        assert [m.content for m in sample.input] == [f"q{index}"]
        assert (sample.finish_reason, sample.model, sample.prompt_tokens, sample.completion_tokens) == (
            "stop",
            MODEL,
            3,
            2,
        )
        assert not sample.error_code
    assert {caller.organization for caller in generation.callers} == {"org-a"}
    assert generation.most_at_once == 2  # TAILOR_GATEWAY_EVAL_SAMPLER_CONCURRENCY
    request = trainer.claim_requests[0]
    assert (request.max_items, request.lease_s) == (4, 600) and request.sampler


async def test_a_failed_generation_is_that_items_error_and_the_rest_go_on() -> None:
    trainer = ScriptedTrainer(claims=[claim(4)])
    generation = FakeGeneration(
        failures={
            "q1": OpenAIError(404, f"The model `{MODEL}` does not exist.", code="model_not_found"),
            "q2": model_not_found(MODEL),
            "q3": InvalidArgument("the prompt is longer than the context", param="messages"),
        }
    )
    sampler = EvalSampler(trainer, generation, settings())  # type: ignore[arg-type]
    await run_until_claimed_all(sampler, trainer)

    by_index = {item.item_index: item.sample for item in trainer.recorded}
    assert [m.content for m in by_index[0].output] == ["a0"] and not by_index[0].error_code
    assert (by_index[1].error_code, by_index[2].error_code) == ("model_not_found", "model_not_found")
    assert MODEL in by_index[1].error_message and not by_index[1].output
    assert by_index[3].error_code == "invalid_value"
    assert "context" in by_index[3].error_message


async def test_a_bug_in_generation_is_an_item_error_not_a_dead_sampler() -> None:
    trainer = ScriptedTrainer(claims=[claim(2), claim(1, run_id="evalrun_2")])
    generation = FakeGeneration(failures={"q1": RuntimeError("boom")})
    sampler = EvalSampler(trainer, generation, settings())  # type: ignore[arg-type]
    await run_until_claimed_all(sampler, trainer)
    errors = [item.sample.error_code for item in trainer.recorded]
    assert errors.count("sampling_failed") == 1 and len(trainer.recorded) == 3


async def test_a_cancelled_run_stops_its_unfinished_generations() -> None:
    trainer = ScriptedTrainer(claims=[claim(4)], records=[pb.RecordEvalSamplesResponse(run_cancelled=True)])
    generation = FakeGeneration(release=asyncio.Event())  # q0 answers, the others wait
    everything_at_once = settings(gateway_eval_sampler_concurrency=4)
    sampler = EvalSampler(trainer, generation, everything_at_once)  # type: ignore[arg-type]
    await run_until_claimed_all(sampler, trainer)

    assert sampler.cancelled_runs == ["evalrun_1"]
    assert trainer.recorded == []
    assert generation.cancelled == 3 and generation.running == 0


async def test_an_unavailable_trainer_is_waited_for_with_backoff() -> None:
    trainer = ScriptedTrainer(claims=[unavailable(), unavailable(), claim(1)], records=[unavailable()])
    sampler = EvalSampler(trainer, FakeGeneration(), settings())  # type: ignore[arg-type]
    await run_until_claimed_all(sampler, trainer)
    assert [item.item_index for item in trainer.recorded] == [0]  # the record was retried


async def test_with_no_work_the_wait_doubles_up_to_the_most() -> None:
    trainer = ScriptedTrainer()
    sampler = EvalSampler(trainer, FakeGeneration(), settings())  # type: ignore[arg-type]
    waits: list[float] = []
    real_sleep = asyncio.sleep

    async def recorded_sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) >= 5:
            raise asyncio.CancelledError
        await real_sleep(0)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("services.gateway.evals.sampler.asyncio.sleep", recorded_sleep)
        with pytest.raises(asyncio.CancelledError):
            await sampler.run_forever()
    assert waits == [0.01, 0.02, 0.04, 0.04, 0.04]


async def test_an_unexpected_failure_of_a_claim_does_not_end_the_sampler() -> None:
    trainer = ScriptedTrainer(claims=[RuntimeError("a bug"), claim(1)])
    sampler = EvalSampler(trainer, FakeGeneration(), settings())  # type: ignore[arg-type]
    await run_until_claimed_all(sampler, trainer)
    assert [item.item_index for item in trainer.recorded] == [0]
