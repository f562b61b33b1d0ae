"""The model registry's answers, kept for a moment: the one cache of what a model name stands for.

The gateway (for every completion) and each inference replica (for every request naming an
adapter) ask the trainer's ``ModelRegistryService.ResolveModel`` what a name stands for in
the calling organization. Asking on every request costs a registry round trip each time, so
both keep the answers here, per (organization, name):

- for ``ttl_s`` seconds from when the question was asked (0: never kept);
- only answers: a failure (NOT_FOUND for an unknown, deleted or foreign name, the registry
  unreachable) reaches the caller and is not kept, so a model registered a moment ago
  resolves at once;
- concurrent misses for one key share one registry call;
- :meth:`RegistryAnswers.forget` drops names at once (a model deleted, an adapter unloaded),
  and an answer that was in flight meanwhile is neither kept nor shared with later callers;
- past ``max_entries``, expired answers are swept out, and if that frees nothing, the cache
  starts over (organizations and names come and go).

What each service makes of an answer (the gateway routes it, a replica refuses a base model
and loads an adapter) stays with it: :mod:`services.gateway.models.resolved`,
:mod:`services.inference.registry`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from services.common.tenancy import call_context, current_request_id
from tailor.trainer.v1 import model_registry_service_pb2 as pb
from tailor.trainer.v1 import model_registry_service_pb2_grpc as pb_grpc

MAX_ENTRIES = 4096

Key = tuple[str, str]  # (organization, name)


class RegistryAnswers:
    """(organization, name) -> the registry's :class:`pb.Model`, kept ``ttl_s``; see the module docstring."""

    def __init__(
        self,
        registry: pb_grpc.ModelRegistryServiceStub,
        ttl_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = MAX_ENTRIES,
    ) -> None:
        self._registry = registry
        self._ttl_s = ttl_s
        self._clock = clock
        self._max_entries = max_entries
        self._kept: dict[Key, tuple[pb.Model, float]] = {}
        self._asking: dict[Key, asyncio.Task[pb.Model]] = {}
        self._forgets = 0  # bumped by every forget: an answer asked for before one is not kept

    async def resolve(self, organization: str, name: str) -> pb.Model:
        """What ``name`` stands for in ``organization``, kept or asked; the registry's error otherwise."""
        key = (organization, name)
        kept = self._kept.get(key)
        if kept is not None:
            if self._clock() < kept[1]:
                return kept[0]
            del self._kept[key]
        task = self._asking.get(key)
        if task is None:
            task = self._asking[key] = asyncio.create_task(self._ask_and_keep(key))
            task.add_done_callback(lambda done: self._asked(key, done))
        # Shielded: one caller leaving does not cancel the question the others wait for.
        return await asyncio.shield(task)

    async def ask(self, organization: str, name: str) -> pb.Model:
        """The registry's answer now, not kept (retrieving or deleting a model asks afresh)."""
        # The call goes as the organization asked about (open_channel carries it), whatever
        # context a shared task happens to have started in.
        with call_context(organization, current_request_id()):
            response: pb.ResolveModelResponse = await self._registry.ResolveModel(
                pb.ResolveModelRequest(model=name)
            )
        return response.model

    def forget(self, organization: str, *names: str) -> None:
        """Drops ``names`` of ``organization``; questions about them already asked are not kept or shared."""
        self._forgets += 1
        for name in names:
            self._kept.pop((organization, name), None)
            self._asking.pop((organization, name), None)

    def _asked(self, key: Key, task: asyncio.Task[pb.Model]) -> None:
        if self._asking.get(key) is task:  # not a newer question asked after a forget
            del self._asking[key]

    async def _ask_and_keep(self, key: Key) -> pb.Model:
        asked_at, forgets = self._clock(), self._forgets
        model = await self.ask(*key)
        if self._ttl_s > 0 and forgets == self._forgets:
            if len(self._kept) >= self._max_entries:
                now = self._clock()
                self._kept = {k: v for k, v in self._kept.items() if v[1] > now}
                if len(self._kept) >= self._max_entries:
                    self._kept.clear()
            self._kept[key] = (model, asked_at + self._ttl_s)
        return model
