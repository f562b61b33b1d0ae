"""Models: the trainer's model registry, and unloading deleted adapters from their base's inference replicas."""

from __future__ import annotations

import grpc
import structlog

from services.gateway.auth import Caller
from services.gateway.models.protocol import Model, ModelDeleted, ModelList
from services.gateway.upstream import Upstreams
from tailor.inference.v1 import inference_service_pb2 as inference_pb
from tailor.trainer.v1 import model_registry_service_pb2 as pb

log = structlog.get_logger("tailor.gateway.models")


class OpenAIServingModels:
    """Handles /v1/models and /v1/models/{model}."""

    def __init__(self, upstreams: Upstreams) -> None:
        self._upstreams = upstreams

    async def list_models(self, caller: Caller) -> ModelList:
        with caller.rpc_context():
            response: pb.ListModelsResponse = await self._upstreams.models.ListModels(pb.ListModelsRequest())
        return ModelList(data=[Model.from_proto(model) for model in response.models])

    async def retrieve(self, caller: Caller, name: str) -> Model:
        return Model.from_proto(await self._upstreams.resolved_models.ask(caller, name))

    async def delete(self, caller: Caller, name: str) -> ModelDeleted:
        """Deletes the model in the registry, then asks every inference replica of its base model
        to drop its adapter.

        The model is resolved first, for its base (the replicas to ask). The registry is the
        source of truth: once it answers, the name resolves to nothing and chat with it is a
        404 whatever the replicas hold. Unloading only frees their memory, so a replica that
        cannot be reached is logged, not reported to the caller. Every replica is asked at
        once, so one slow replica does not hold up the others.
        """
        model = await self._upstreams.resolved_models.ask(caller, name)
        try:
            with caller.rpc_context():
                response: pb.DeleteModelResponse = await self._upstreams.models.DeleteModel(
                    pb.DeleteModelRequest(model=name)
                )
        finally:
            # this gateway's chat stops serving the name at once (however the registry answered)
            self._upstreams.resolved_models.forget(caller.organization, name, model.id)
        deleted = response.model or name
        with caller.rpc_context():
            answers = await self._upstreams.inference.broadcast(
                model.base_model or model.id,
                lambda stub: stub.UnloadAdapter(inference_pb.UnloadAdapterRequest(name=deleted)),
            )
        for replica, answer in answers.items():
            if isinstance(answer, grpc.aio.AioRpcError):
                log.warning(
                    "could not unload a deleted model's adapter",
                    model=deleted,
                    replica=replica,
                    grpc_status=answer.code().name,
                )
        return ModelDeleted(id=deleted, deleted=response.deleted)
