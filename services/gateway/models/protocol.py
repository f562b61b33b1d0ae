"""OpenAI's model objects: ``created`` (not ``created_at``), and a list that is not paginated."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from tailor.trainer.v1 import model_registry_service_pb2 as pb


class Model(BaseModel):
    """A model name usable as ``model``: a base model (owned by ``system``) or one of the caller's."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str

    @classmethod
    def from_proto(cls, model: pb.Model) -> Model:
        return cls(id=model.id, created=model.created, owned_by=model.owned_by)


class ModelList(BaseModel):
    """``{"object": "list", "data": [...]}``: all of them, no cursor (the SDK never pages models)."""

    object: Literal["list"] = "list"
    data: list[Model]


class ModelDeleted(BaseModel):
    """The answer to ``DELETE /v1/models/{model}``."""

    id: str
    object: Literal["model"] = "model"
    deleted: bool
