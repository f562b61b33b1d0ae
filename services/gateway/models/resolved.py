"""The registry's answer for a model name, kept briefly for the generation routes.

Chat and text completions resolve their model on every request; asking the registry each
time is one more gRPC call per completion (a fifth of what the gateway itself costs a
short stream). :class:`ResolvedModels` keeps each answer per (organization, name) for
``TAILOR_GATEWAY_MODEL_CACHE_TTL_S`` seconds, in the registry answers' one cache
(:mod:`services.common.registry_answers`, which inference replicas keep too):

- a model deleted through this gateway is forgotten at once (:meth:`ResolvedModels.forget`,
  called by the delete route), and an answer that was in flight while it was forgotten is
  not kept;
- a model deleted through another gateway replica (or by the trainer) is served here for at
  most the TTL; the inference replica then still refuses the deleted adapter, since it
  resolves the name in the registry itself before loading it;
- unknown names are never kept, so a model that has just been created is found at once.

Retrieval (``GET /v1/models/{model}``) and deletion ask the registry every time.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from services.common.registry_answers import RegistryAnswers
from services.gateway.auth import Caller
from tailor.trainer.v1 import model_registry_service_pb2 as pb
from tailor.trainer.v1 import model_registry_service_pb2_grpc as pb_grpc


class ResolvedModels:
    """The caller's organization's answers, for ``ttl_s`` seconds; see the module docstring."""

    def __init__(
        self,
        registry: pb_grpc.ModelRegistryServiceStub,
        ttl_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._answers = RegistryAnswers(registry, ttl_s, clock=clock)

    async def resolve(self, caller: Caller, name: str) -> pb.Model:
        """What ``name`` stands for in the caller's organization; 404 ``model_not_found`` otherwise."""
        with caller.rpc_context():
            return await self._answers.resolve(caller.organization, name)

    async def ask(self, caller: Caller, name: str) -> pb.Model:
        """The registry's answer now, not kept: what retrieval and deletion use.

        Unknown, deleted and other organizations' names all read the same (404
        ``model_not_found``), so existence does not leak.
        """
        with caller.rpc_context():
            return await self._answers.ask(caller.organization, name)

    def forget(self, organization: str, *names: str) -> None:
        """Drops ``names`` of ``organization`` (a model deleted through this gateway)."""
        self._answers.forget(organization, *names)
