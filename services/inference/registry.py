"""Which adapter a model name stands for, in the organization of the call: asked of the model registry.

A replica never trusts a caller with an adapter's location: a request names a model, and
the replica asks the trainer's ``ModelRegistryService.ResolveModel`` what that name stands
for in the calling organization (whose metadata the call carries). Another organization's
model, an unknown one and a deleted one are all NOT_FOUND ``model_not_found``, as the
registry answers them, so a caller can neither load nor detect an adapter it does not own.

Resolutions are cached per (organization, name) for ``ttl_s`` seconds (only successful
ones: a model registered a moment ago resolves at once), so a busy adapter does not cost a
registry round trip per request, and a deleted model stops being served within ``ttl_s``
even on a replica that missed the gateway's UnloadAdapter; UnloadAdapter forgets the
resolution at once. Concurrent misses for the same key share one registry call.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

import grpc

from services.common.errors import Unavailable
from services.common.not_found import model_not_found
from services.common.tenancy import call_context, current_request_id
from services.inference.adapters import AdapterRef
from tailor.trainer.v1 import model_registry_service_pb2 as registry_pb
from tailor.trainer.v1 import model_registry_service_pb2_grpc as registry_grpc

# The registry methods a replica calls; safe to retry (open_channel's idempotent_methods).
RESOLVE_MODEL = f"/{registry_pb.DESCRIPTOR.services_by_name['ModelRegistryService'].full_name}/ResolveModel"
# Cached resolutions past which expired ones are swept out when another is added.
SWEEP_ABOVE = 1024


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
        self._registry = registry
        self._ttl_s = ttl_s
        self._clock = clock
        self._resolved: dict[tuple[str, str], tuple[AdapterRef, float]] = {}
        self._pending: dict[tuple[str, str], asyncio.Task[AdapterRef]] = {}

    async def resolve(self, organization: str, name: str) -> AdapterRef:
        """The organization's adapter named ``name``; NOT_FOUND ``model_not_found`` otherwise."""
        key = (organization, name)
        cached = self._resolved.get(key)
        if cached is not None:
            ref, expires_at = cached
            if self._clock() < expires_at:
                return ref
            del self._resolved[key]
        task = self._pending.get(key)
        if task is None:
            task = self._pending[key] = asyncio.create_task(self._ask(organization, name))
            task.add_done_callback(lambda _: self._pending.pop(key, None))
        return await asyncio.shield(task)

    def forget(self, organization: str, name: str) -> None:
        """Drop a cached resolution (the model was unloaded, perhaps deleted)."""
        self._resolved.pop((organization, name), None)

    async def _ask(self, organization: str, name: str) -> AdapterRef:
        asked_at = self._clock()
        try:
            # The call goes as the organization being served (open_channel carries it), whatever
            # context this shared task happens to have started in.
            with call_context(organization, current_request_id()):
                response: registry_pb.ResolveModelResponse = await self._registry.ResolveModel(
                    registry_pb.ResolveModelRequest(model=name)
                )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                raise model_not_found(name) from None
            raise Unavailable(
                f"the model registry could not resolve `{name}` ({error.code().name}); try again"
            ) from None
        model = response.model
        if model.kind == registry_pb.MODEL_KIND_BASE or not model.adapter_uri:
            # A base model has no adapter: the gateway sends those without one.
            raise model_not_found(name)
        ref = AdapterRef(
            name=name,
            uri=model.adapter_uri,
            base_model=model.base_model,
            lora_rank=model.lora_rank,
            target_modules=tuple(model.lora_target_modules),
        )
        if len(self._resolved) >= SWEEP_ABOVE:
            now = self._clock()
            self._resolved = {k: v for k, v in self._resolved.items() if v[1] > now}
        self._resolved[(organization, name)] = (ref, asked_at + self._ttl_s)
        return ref
