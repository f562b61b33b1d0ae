"""The registry's answer for a model name, kept briefly for the generation routes.

Chat and text completions resolve their model on every request; asking the registry each
time is one more gRPC call per completion (a fifth of what the gateway itself costs a
short stream). :class:`ResolvedModels` keeps each successful answer per (organization,
name) for ``TAILOR_GATEWAY_MODEL_CACHE_TTL_S`` seconds:

- a model deleted through this gateway is forgotten at once (:meth:`forget`, called by the
  delete route), and an answer that was in flight while it was forgotten is not kept;
- a model deleted through another gateway replica (or by the trainer) is served here for at
  most the TTL; the inference replica then still refuses the deleted adapter, since it
  resolves the name in the registry itself before loading it;
- unknown names are never kept, so a model that has just been created is found at once.

Retrieval (``GET /v1/models/{model}``) and deletion ask the registry every time.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from services.gateway.auth import Caller
from tailor.trainer.v1 import model_registry_service_pb2 as pb
from tailor.trainer.v1 import model_registry_service_pb2_grpc as pb_grpc

# Organizations and names come and go: past this many entries the cache starts over.
MAX_ENTRIES = 4096


class ResolvedModels:
    """(organization, name) -> the registry's model, for ``ttl_s`` seconds; see the module docstring."""

    def __init__(
        self,
        registry: pb_grpc.ModelRegistryServiceStub,
        ttl_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._registry = registry
        self._ttl_s = ttl_s
        self._clock = clock
        self._entries: dict[tuple[str, str], tuple[pb.Model, float]] = {}
        self._forgets = 0  # bumped by every forget: an answer asked for before one is not kept

    async def resolve(self, caller: Caller, name: str) -> pb.Model:
        """What ``name`` stands for in the caller's organization; 404 ``model_not_found`` otherwise."""
        key = (caller.organization, name)
        entry = self._entries.get(key)
        now = self._clock()
        if entry is not None and now < entry[1]:
            return entry[0]
        forgets = self._forgets
        model = await self.ask(caller, name)
        if self._ttl_s > 0 and forgets == self._forgets:
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
            self._entries[key] = (model, now + self._ttl_s)
        return model

    async def ask(self, caller: Caller, name: str) -> pb.Model:
        """The registry's answer now, not kept: what retrieval and deletion use.

        Unknown, deleted and other organizations' names all read the same (404
        ``model_not_found``), so existence does not leak.
        """
        with caller.rpc_context():
            response: pb.ResolveModelResponse = await self._registry.ResolveModel(
                pb.ResolveModelRequest(model=name)
            )
        return response.model

    def forget(self, organization: str, *names: str) -> None:
        """Drops ``names`` of ``organization`` (a model deleted through this gateway)."""
        self._forgets += 1
        for name in names:
            self._entries.pop((organization, name), None)
