"""Adapters resolved through the model registry, per organization, cached briefly."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from services.common.errors import NotFound, Unavailable
from services.common.tenancy import current_organization
from services.inference.registry import RegistryResolver
from tailor.trainer.v1 import model_registry_service_pb2 as registry_pb


class StandInRegistry:
    """ResolveModel over {(organization, name): Model}; counts calls; foreign names NOT_FOUND."""

    def __init__(self) -> None:
        self.models: dict[tuple[str, str], registry_pb.Model] = {}
        self.calls: list[tuple[str, str]] = []
        self.gate: asyncio.Event | None = None
        self.down = False

    def register(
        self, organization: str, name: str, uri: str, kind: int = registry_pb.MODEL_KIND_FINE_TUNED
    ) -> None:
        self.models[(organization, name)] = registry_pb.Model(
            id=name, kind=kind, base_model="tailor-tiny", owned_by=organization, adapter_uri=uri, lora_rank=8
        )

    async def ResolveModel(self, request: registry_pb.ResolveModelRequest) -> Any:
        organization = current_organization()  # what open_channel's calls carry
        self.calls.append((organization, request.model))
        if self.gate is not None:
            await self.gate.wait()
        if self.down:
            raise _error(grpc.StatusCode.UNAVAILABLE)
        model = self.models.get((organization, request.model))
        if model is None:
            raise _error(grpc.StatusCode.NOT_FOUND)
        return registry_pb.ResolveModelResponse(model=model)


def _error(code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=code.name)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def resolver(registry: StandInRegistry, clock: Clock | None = None) -> RegistryResolver:
    return RegistryResolver(registry, ttl_s=10.0, clock=clock or Clock())  # type: ignore[arg-type]


async def test_a_name_resolves_only_in_its_organization_and_to_that_organizations_adapter() -> None:
    registry = StandInRegistry()
    registry.register("org-a", "ft:x", "orgs/org-a/jobs/1/adapter/")
    registry.register("org-b", "ft:x", "orgs/org-b/jobs/2/adapter/")
    registry.register("org-a", "ft:only-a", "orgs/org-a/jobs/3/adapter/")
    r = resolver(registry)
    assert (await r.resolve("org-a", "ft:x")).uri == "orgs/org-a/jobs/1/adapter/"
    assert (await r.resolve("org-b", "ft:x")).uri == "orgs/org-b/jobs/2/adapter/"
    with pytest.raises(NotFound) as raised:
        await r.resolve("org-b", "ft:only-a")
    assert raised.value.code == "model_not_found" and "ft:only-a" in raised.value.message
    ref = await r.resolve("org-a", "ft:only-a")
    assert (ref.name, ref.base_model, ref.lora_rank) == ("ft:only-a", "tailor-tiny", 8)


async def test_resolutions_are_cached_per_organization_until_the_ttl_or_forget() -> None:
    registry, clock = StandInRegistry(), Clock()
    registry.register("org-a", "ft:x", "orgs/org-a/x/")
    r = resolver(registry, clock)
    await r.resolve("org-a", "ft:x")
    await r.resolve("org-a", "ft:x")
    assert registry.calls == [("org-a", "ft:x")]
    # Another organization's identical name is never answered from org-a's entry.
    with pytest.raises(NotFound):
        await r.resolve("org-b", "ft:x")
    del registry.models[("org-a", "ft:x")]  # deleted in the registry
    clock.now += 9.9
    await r.resolve("org-a", "ft:x")  # still within the TTL
    clock.now += 0.2
    with pytest.raises(NotFound):
        await r.resolve("org-a", "ft:x")
    registry.register("org-a", "ft:x", "orgs/org-a/x/")
    await r.resolve("org-a", "ft:x")
    r.forget("org-a", "ft:x")
    calls = len(registry.calls)
    await r.resolve("org-a", "ft:x")
    assert len(registry.calls) == calls + 1


async def test_concurrent_misses_share_one_call_and_failures_are_not_cached() -> None:
    registry = StandInRegistry()
    registry.register("org-a", "ft:x", "orgs/org-a/x/")
    registry.gate = asyncio.Event()
    r = resolver(registry)
    waiting = [asyncio.create_task(r.resolve("org-a", "ft:x")) for _ in range(5)]
    await asyncio.sleep(0.01)
    registry.gate.set()
    assert {ref.uri for ref in await asyncio.gather(*waiting)} == {"orgs/org-a/x/"}
    assert registry.calls == [("org-a", "ft:x")]
    registry.down = True
    with pytest.raises(Unavailable):
        await r.resolve("org-a", "ft:y")
    registry.down = False
    registry.register("org-a", "ft:y", "orgs/org-a/y/")
    assert (await r.resolve("org-a", "ft:y")).uri == "orgs/org-a/y/"


async def test_a_base_model_is_no_adapter() -> None:
    registry = StandInRegistry()
    registry.register("org-a", "tailor-tiny", "", kind=registry_pb.MODEL_KIND_BASE)
    with pytest.raises(NotFound):
        await resolver(registry).resolve("org-a", "tailor-tiny")
