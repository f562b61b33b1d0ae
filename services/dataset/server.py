"""Builds the dataset service's gRPC server.

The DatasetService servicer lands with the dataset issue; until then the server
answers health (ready when the object store answers) and reflection.
"""

from __future__ import annotations

from services.common.grpc_server import GrpcServer
from services.common.object_store import open_object_store
from services.dataset.config import DatasetSettings


def build_server(settings: DatasetSettings) -> GrpcServer:
    store = open_object_store(settings)
    return GrpcServer(settings, settings.dataset_listen, readiness_checks=[store.check])
