"""The gateway's gRPC clients of the internal services.

One channel per service, opened by :func:`services.common.grpc_client.open_channel`:
every call has a deadline and carries the caller's organization and request id, and
only reads (and the idempotent unload) are retried on UNAVAILABLE. Uploads, deletions
and job creation are never retried by the channel: a retried delete would answer
NOT_FOUND for a delete that worked, and creation has its idempotency key instead.

Inference goes only through :class:`~services.gateway.routing.AdapterAffinityRouter`
(``Upstreams.inference``), which picks the replica for each model among those of its base
model (the same replicas for the same adapter, so it stays warm) out of
``TAILOR_INFERENCE_ADDR``: addresses and headless Services' DNS names, one per base model's
replicas. Its channels have no gRPC retry policy: moving a refused call on to the next
replica is the router's job, and a channel retrying a dead replica first would only delay that.
"""

from __future__ import annotations

import asyncio

from services.common.grpc_client import idempotent, open_channel
from services.gateway.config import GatewaySettings
from services.gateway.health import upstream_status
from services.gateway.models.resolved import ResolvedModels
from services.gateway.routing import AdapterAffinityRouter
from tailor.dataset.v1 import dataset_service_pb2, dataset_service_pb2_grpc
from tailor.trainer.v1 import (
    eval_service_pb2,
    eval_service_pb2_grpc,
    model_registry_service_pb2,
    model_registry_service_pb2_grpc,
    trainer_service_pb2,
    trainer_service_pb2_grpc,
    webhook_service_pb2_grpc,
)


def _methods(file_descriptor, service: str, *names: str) -> list[str]:  # type: ignore[no-untyped-def]
    methods = file_descriptor.services_by_name[service].methods_by_name
    return idempotent(*(methods[name] for name in names))


DATASET_IDEMPOTENT = _methods(
    dataset_service_pb2.DESCRIPTOR,
    "DatasetService",
    "GetFile",
    "ListFiles",
    "DownloadFile",
    "GetFileStatistics",
)
TRAINER_IDEMPOTENT = _methods(
    trainer_service_pb2.DESCRIPTOR,
    "TrainerService",
    "GetJob",
    "ListJobs",
    "ListJobEvents",
    "ListJobCheckpoints",
) + _methods(model_registry_service_pb2.DESCRIPTOR, "ModelRegistryService", "ResolveModel", "ListModels")
TRAINER_IDEMPOTENT += _methods(
    eval_service_pb2.DESCRIPTOR,
    "EvalService",
    "GetEval",
    "ListEvals",
    "GetEvalRun",
    "ListEvalRuns",
    "ListEvalRunOutputItems",
    "GetEvalRunOutputItem",
)


class Upstreams:
    """Stubs of every internal service the gateway calls; :meth:`start` begins replica discovery."""

    def __init__(self, settings: GatewaySettings) -> None:
        self._dataset_channel = open_channel(
            settings.dataset_addr, settings, idempotent_methods=DATASET_IDEMPOTENT
        )
        self._trainer_channel = open_channel(
            settings.trainer_addr, settings, idempotent_methods=TRAINER_IDEMPOTENT
        )
        self.files = dataset_service_pb2_grpc.DatasetServiceStub(self._dataset_channel)
        self.jobs = trainer_service_pb2_grpc.TrainerServiceStub(self._trainer_channel)
        self.models = model_registry_service_pb2_grpc.ModelRegistryServiceStub(self._trainer_channel)
        # the generation routes' model lookups, kept briefly (services.gateway.models.resolved)
        self.resolved_models = ResolvedModels(self.models, settings.gateway_model_cache_ttl_s)
        self.webhooks = webhook_service_pb2_grpc.WebhookServiceStub(self._trainer_channel)
        self.evals = eval_service_pb2_grpc.EvalServiceStub(self._trainer_channel)
        self.inference = AdapterAffinityRouter(settings)

    async def start(self) -> None:
        await self.inference.start()

    async def readiness(self) -> dict[str, str]:
        """{service: SERVING, NOT_SERVING or the gRPC code of why it could not be asked}."""
        dataset, trainer, inference = await asyncio.gather(
            upstream_status(self._dataset_channel),
            upstream_status(self._trainer_channel),
            self.inference.readiness(),
        )
        return {"dataset": dataset, "trainer": trainer, "inference": inference}

    async def close(self) -> None:
        await self._dataset_channel.close()
        await self._trainer_channel.close()
        await self.inference.close()
