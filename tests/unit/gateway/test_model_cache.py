"""The generation routes' model lookups: kept for the TTL, never past a delete through this gateway."""

from __future__ import annotations

import openai
import pytest

from services.gateway.auth import Caller
from services.gateway.models.resolved import ResolvedModels
from tailor.trainer.v1 import model_registry_service_pb2 as registry_pb
from tests.unit.gateway.conftest import Gateway, GatewayFactory
from tests.unit.gateway.test_models import fine_tuned_model

HI = [{"role": "user", "content": "hi"}]


async def test_a_model_deleted_through_the_gateway_is_404_for_chat_at_once(gateway: Gateway) -> None:
    name, _ = await fine_tuned_model(gateway)
    client = gateway.sdk()
    for _ in range(2):  # the second answer comes from the cache
        assert (await client.chat.completions.create(model=name, messages=HI)).model == name
    await client.models.delete(name)
    with pytest.raises(openai.NotFoundError) as caught:
        await client.chat.completions.create(model=name, messages=HI)
    assert caught.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        await client.completions.create(model=name, prompt="hi")


async def test_without_a_ttl_a_delete_elsewhere_is_404_at_once(gateway_with: GatewayFactory) -> None:
    async with gateway_with(gateway_model_cache_ttl_s=0) as gateway:
        name, _ = await fine_tuned_model(gateway)
        client = gateway.sdk()
        await client.chat.completions.create(model=name, messages=HI)
        gateway.fakes.registry.deleted.add(name)  # another gateway replica deleted it
        with pytest.raises(openai.NotFoundError):
            await client.chat.completions.create(model=name, messages=HI)


class CountingRegistry:
    """A registry stub that knows one model and counts the questions it is asked."""

    def __init__(self) -> None:
        self.asked = 0

    async def ResolveModel(
        self, request: registry_pb.ResolveModelRequest
    ) -> registry_pb.ResolveModelResponse:
        self.asked += 1
        model = registry_pb.Model(id=request.model, owned_by="org-a")
        return registry_pb.ResolveModelResponse(model=model)


async def test_answers_are_kept_per_organization_until_the_ttl() -> None:
    now = [100.0]
    registry = CountingRegistry()
    models = ResolvedModels(registry, ttl_s=2.0, clock=lambda: now[0])  # type: ignore[arg-type]
    org_a, org_b = Caller("org-a", "req_1"), Caller("org-b", "req_2")

    assert (await models.resolve(org_a, "m")).id == "m"
    await models.resolve(org_a, "m")
    assert registry.asked == 1
    await models.resolve(org_b, "m")  # another organization's name is another question
    assert registry.asked == 2
    now[0] += 2.0
    await models.resolve(org_a, "m")
    assert registry.asked == 3
    models.forget("org-a", "m")
    await models.resolve(org_a, "m")
    assert registry.asked == 4


async def test_an_answer_in_flight_during_a_delete_is_not_kept() -> None:
    registry = CountingRegistry()
    models = ResolvedModels(registry, ttl_s=60.0)  # type: ignore[arg-type]
    caller = Caller("org-a", "req_1")
    answering = registry.ResolveModel

    async def delete_while_answering(request: registry_pb.ResolveModelRequest) -> object:
        models.forget("org-a", "m")  # this gateway deletes the model while the registry answers
        return await answering(request)

    registry.ResolveModel = delete_while_answering  # type: ignore[method-assign]
    await models.resolve(caller, "m")
    registry.ResolveModel = answering  # type: ignore[method-assign]
    await models.resolve(caller, "m")
    assert registry.asked == 2  # the first answer was not kept
