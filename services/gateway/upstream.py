"""The gateway's gRPC clients of the internal services.

One channel per service, opened by :func:`services.common.grpc_client.open_channel`:
every call has a deadline and carries the caller's organization and request id, and
only reads (and the idempotent unload) are retried on UNAVAILABLE. Uploads, deletions
and job creation are never retried by the channel: a retried delete would answer
NOT_FOUND for a delete that worked, and creation has its idempotency key instead.

Inference goes through :class:`~services.gateway.routing.AdapterAffinityRouter`, which
picks the replica for each model (the same replicas for the same adapter, so it stays
warm) out of ``TAILOR_INFERENCE_ADDR``: one address, a list, or a headless Service's DNS
name. Every replica's channel is opened like the others, retries included.
"""

from __future__ import annotations

import grpc

from services.common.errors import Unavailable
from services.common.grpc_client import idempotent, open_channel
from services.gateway.config import GatewaySettings
from services.gateway.routing import AdapterAffinityRouter
from tailor.dataset.v1 import dataset_service_pb2, dataset_service_pb2_grpc
from tailor.inference.v1 import inference_service_pb2, inference_service_pb2_grpc
from tailor.trainer.v1 import (
    model_registry_service_pb2,
    model_registry_service_pb2_grpc,
    trainer_service_pb2,
    trainer_service_pb2_grpc,
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
# GenerateCompletion is retried only if the replica refused it before generating anything,
# which gRPC's retry policy guarantees (no retry once a response message arrived).
INFERENCE_IDEMPOTENT = _methods(
    inference_service_pb2.DESCRIPTOR,
    "InferenceService",
    "GenerateCompletion",
    "LoadAdapter",
    "UnloadAdapter",
    "ListAdapters",
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
        self.inference = AdapterAffinityRouter(
            settings.inference_addr,
            settings,
            channel_factory=lambda address: open_channel(
                address, settings, idempotent_methods=INFERENCE_IDEMPOTENT
            ),
        )

    async def start(self) -> None:
        await self.inference.start()

    def inference_for(self, adapter_name: str | None) -> inference_service_pb2_grpc.InferenceServiceStub:
        """The inference replica a request for ``adapter_name`` (None: the bare base model) goes to."""
        return inference_service_pb2_grpc.InferenceServiceStub(self.inference.channel_for(adapter_name))

    def every_inference_replica(self) -> list[inference_service_pb2_grpc.InferenceServiceStub]:
        """One stub per replica, for what every replica must hear (unloading a deleted model)."""
        return [inference_service_pb2_grpc.InferenceServiceStub(c) for c in self.inference.all_channels()]

    def health_channels(self) -> dict[str, grpc.aio.Channel | None]:
        """{service name: a channel to ask}, for readiness; None when no inference replica is known."""
        try:
            inference: grpc.aio.Channel | None = self.inference.channel_for(None)
        except Unavailable:
            inference = None
        return {"dataset": self._dataset_channel, "trainer": self._trainer_channel, "inference": inference}

    async def close(self) -> None:
        await self._dataset_channel.close()
        await self._trainer_channel.close()
        await self.inference.close()
