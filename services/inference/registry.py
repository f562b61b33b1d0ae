"""Which adapter a model name stands for, in the organization of the call: asked of the model registry.

A replica never trusts a caller with an adapter's location: a request names a model, and
the replica asks the trainer's ``ModelRegistryService.ResolveModel`` what that name stands
for in the calling organization (whose metadata the call carries). Another organization's
model, an unknown one and a deleted one are all NOT_FOUND ``model_not_found``, as the
registry answers them, so a caller can neither load nor detect an adapter it does not own.

The registry's answers are kept per (organization, name) for ``ttl_s`` seconds in their one
cache (:mod:`services.common.registry_answers`, which the gateway keeps too: only answers, so
a model registered a moment ago resolves at once; concurrent misses share one call), so a
busy adapter does not cost a registry round trip per request, and a deleted model stops
being served within ``ttl_s`` even on a replica that missed the gateway's UnloadAdapter;
UnloadAdapter forgets the resolution at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

import grpc

from services.common.errors import Unavailable
from services.common.not_found import model_not_found
from services.common.registry_answers import RegistryAnswers
from services.inference.adapters import AdapterRef
from tailor.trainer.v1 import model_registry_service_pb2 as registry_pb
from tailor.trainer.v1 import model_registry_service_pb2_grpc as registry_grpc

# The registry methods a replica calls; safe to retry (open_channel's idempotent_methods).
RESOLVE_MODEL = f"/{registry_pb.DESCRIPTOR.services_by_name['ModelRegistryService'].full_name}/ResolveModel"


class AdapterResolver(Protocol):
    """What a model name stands for in an organization, as an adapter this replica may load."""

    async def resolve(self, organization: str, name: str) -> AdapterRef: ...

    def forget(self, organization: str, name: str) -> None: ...


class RegistryResolver:
    """:class:`AdapterResolver` over the model registry's gRPC API; see the module docstring."""

    def __init__(
        self,
        registry: registry_grpc.ModelRegistryServiceStub,
        *,
        ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._answers = RegistryAnswers(registry, ttl_s, clock=clock)

    async def resolve(self, organization: str, name: str) -> AdapterRef:
        """The organization's adapter named ``name``; NOT_FOUND ``model_not_found`` otherwise."""
        try:
            model = await self._answers.resolve(organization, name)
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                raise model_not_found(name) from None
            raise Unavailable(
                f"the model registry could not resolve `{name}` ({error.code().name}); try again"
            ) from None
        if model.kind == registry_pb.MODEL_KIND_BASE or not model.adapter_uri:
            # A base model has no adapter: the gateway sends those without one.
            raise model_not_found(name)
        return AdapterRef(
            name=name,
            uri=model.adapter_uri,
            base_model=model.base_model,
            lora_rank=model.lora_rank,
            target_modules=tuple(model.lora_target_modules),
        )

    def forget(self, organization: str, name: str) -> None:
        """Drop a kept resolution (the model was unloaded, perhaps deleted)."""
        self._answers.forget(organization, name)
