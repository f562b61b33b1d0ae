"""Route of /v1/completions."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from services.gateway.auth import CallerDep
from services.gateway.completions.protocol import Completion, CompletionRequest
from services.gateway.completions.serving import OpenAIServingCompletions

router = APIRouter(prefix="/v1", tags=["completions"])


# async: FastAPI would run a plain `def` dependency in its thread pool, a costly hop per request
async def _serving(request: Request) -> OpenAIServingCompletions:
    return request.app.state.completions_serving


Serving = Annotated[OpenAIServingCompletions, Depends(_serving)]


@router.post(
    "/completions",
    response_model=Completion,
    responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}}},
)
async def create_completion(
    body: CompletionRequest, request: Request, caller: CallerDep, serving: Serving
) -> Completion | StreamingResponse:
    """Continues a text prompt (legacy completions); streams with ``stream``."""
    return await serving.create(caller, body, request)
