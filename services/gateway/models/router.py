"""Routes of /v1/models.

Model names contain ``:`` (``ft:base:org:suffix:id``) and base names may contain ``/``,
which SDK 1.x sends raw and SDK 2+ as ``%2F``; a ``path`` parameter takes both as one name.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from services.gateway.auth import CallerDep
from services.gateway.models.protocol import Model, ModelDeleted, ModelList
from services.gateway.models.serving import OpenAIServingModels
from services.gateway.protocol import ErrorResponse

router = APIRouter(prefix="/v1/models", tags=["models"])


# async: FastAPI would run a plain `def` dependency in its thread pool, a costly hop per request
async def _serving(request: Request) -> OpenAIServingModels:
    return request.app.state.models_serving


Serving = Annotated[OpenAIServingModels, Depends(_serving)]


@router.get("", response_model=ModelList)
async def list_models(caller: CallerDep, serving: Serving) -> ModelList:
    """Lists the base models and the organization's fine-tuned models and checkpoints."""
    return await serving.list_models(caller)


@router.get("/{model:path}", response_model=Model)
async def retrieve_model(model: str, caller: CallerDep, serving: Serving) -> Model:
    """Returns one model; another organization's reads as missing."""
    return await serving.retrieve(caller, model)


@router.delete(
    "/{model:path}",
    response_model=ModelDeleted,
    responses={403: {"model": ErrorResponse, "description": "A base model cannot be deleted."}},
)
async def delete_model(model: str, caller: CallerDep, serving: Serving) -> ModelDeleted:
    """Deletes a fine-tuned model or checkpoint; afterwards it is a 404 everywhere, chat included."""
    return await serving.delete(caller, model)
