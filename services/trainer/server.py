"""Builds the trainer service's gRPC server.

The TrainerService, ModelRegistryService and WorkerService servicers land with the
trainer issue; until then the server answers health (ready when the object store
answers) and reflection.
"""

from __future__ import annotations

from services.common.grpc_server import GrpcServer
from services.common.object_store import open_object_store
from services.trainer.config import TrainerSettings


def build_server(settings: TrainerSettings) -> GrpcServer:
    store = open_object_store(settings)
    return GrpcServer(settings, settings.trainer_listen, readiness_checks=[store.check])
