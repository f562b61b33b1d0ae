"""Builds the inference service's gRPC server.

The InferenceService servicer and its engines land with the inference issue; until
then the server answers health (ready when the object store answers) and reflection.
"""

from __future__ import annotations

from services.common.grpc_server import GrpcServer
from services.common.object_store import open_object_store
from services.inference.config import InferenceSettings


def build_server(settings: InferenceSettings) -> GrpcServer:
    store = open_object_store(settings)
    return GrpcServer(settings, settings.inference_listen, readiness_checks=[store.check])
