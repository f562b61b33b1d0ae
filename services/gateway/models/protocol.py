"""OpenAI's model objects: ``created`` (not ``created_at``), a list that is not paginated, and
the ``system_fingerprint`` of the backend configuration a model runs with."""

from __future__ import annotations

import hashlib
import importlib.metadata
from typing import Literal

from pydantic import BaseModel

from tailor.trainer.v1 import model_registry_service_pb2 as pb

TAILOR_VERSION = importlib.metadata.version("tailor")


def system_fingerprint(model: pb.Model, engine: str) -> str:
    """OpenAI's ``system_fingerprint`` of an answer of ``model``: ``fp_`` and 10 hex digits.

    OpenAI's clients compare it across answers to tell whether outputs for a fixed ``seed``
    may have changed for reasons other than the request. Here that is Tailor's release, the
    base model, and the engine (``hf`` or ``vllm``) of the replica that generated; the
    adapter is the model the request names, not the backend, so it is left out.
    """
    base_model = model.base_model or model.id
    digest = hashlib.sha256(f"tailor {TAILOR_VERSION}\0{base_model}\0{engine}".encode()).hexdigest()
    return f"fp_{digest[:10]}"


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
