"""The registry answers' one cache, the gateway's and inference's: kept briefly, shared, forgotten at once."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from services.common.registry_answers import RegistryAnswers
from services.common.tenancy import current_organization
from tailor.trainer.v1 import model_registry_service_pb2 as pb


class AnsweringRegistry:
    """Knows every name in every organization; counts questions; can hold them until released."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str]] = []
        self.gate: asyncio.Event | None = None
        self.refuse = False

    async def ResolveModel(self, request: pb.ResolveModelRequest) -> pb.ResolveModelResponse:
        organization = current_organization()  # the organization the call carries
        self.asked.append((organization, request.model))
        if self.gate is not None:
            await self.gate.wait()
        if self.refuse:
            raise grpc.aio.AioRpcError(grpc.StatusCode.NOT_FOUND, grpc.aio.Metadata(), grpc.aio.Metadata())
        return pb.ResolveModelResponse(model=pb.Model(id=request.model, owned_by=organization))


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_an_answer_is_kept_per_organization_for_the_ttl_and_failures_are_not() -> None:
    registry, clock = AnsweringRegistry(), Clock()
    answers = RegistryAnswers(registry, 10.0, clock=clock)  # type: ignore[arg-type]
    assert (await answers.resolve("org-a", "m")).owned_by == "org-a"
    await answers.resolve("org-a", "m")
    assert (await answers.resolve("org-b", "m")).owned_by == "org-b"
    assert registry.asked == [("org-a", "m"), ("org-b", "m")]
    clock.now += 10
    await answers.resolve("org-a", "m")
    assert len(registry.asked) == 3
    registry.refuse = True
    for _ in range(2):
        with pytest.raises(grpc.aio.AioRpcError):
            await answers.resolve("org-a", "new")
    assert registry.asked[-2:] == [("org-a", "new")] * 2


async def test_concurrent_misses_share_one_question_and_a_forget_is_not_undone_by_it() -> None:
    registry = AnsweringRegistry()
    registry.gate = asyncio.Event()
    answers = RegistryAnswers(registry, 60.0)  # type: ignore[arg-type]
    waiting = [asyncio.create_task(answers.resolve("org-a", "m")) for _ in range(3)]
    await asyncio.sleep(0.01)
    assert registry.asked == [("org-a", "m")]
    answers.forget("org-a", "m")  # deleted while the registry answers
    after_the_forget = asyncio.create_task(answers.resolve("org-a", "m"))
    await asyncio.sleep(0.01)
    assert len(registry.asked) == 2  # a new question, not the one asked before the forget
    registry.gate.set()
    await asyncio.gather(*waiting, after_the_forget)
    await answers.resolve("org-a", "m")  # the newer answer was kept; the older one was not
    assert len(registry.asked) == 2


async def test_a_full_cache_sweeps_expired_answers_then_starts_over() -> None:
    registry, clock = AnsweringRegistry(), Clock()
    answers = RegistryAnswers(registry, 10.0, clock=clock, max_entries=3)  # type: ignore[arg-type]
    for name in "abc":
        await answers.resolve("org-a", name)
    clock.now += 11  # a, b and c expire
    await answers.resolve("org-a", "d")
    for name in "ef":
        await answers.resolve("org-a", name)
    asked = len(registry.asked)
    for name in "def":  # d, e and f are kept
        await answers.resolve("org-a", name)
    assert len(registry.asked) == asked
    await answers.resolve("org-a", "g")  # full of live answers: it starts over
    await answers.resolve("org-a", "d")
    assert len(registry.asked) == asked + 2
