"""Route of /v1/chat/completions."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from services.gateway.auth import CallerDep
from services.gateway.chat.protocol import ChatCompletion, ChatCompletionRequest
from services.gateway.chat.serving import OpenAIServingChat

router = APIRouter(prefix="/v1/chat", tags=["chat"])


# async: FastAPI would run a plain `def` dependency in its thread pool, a costly hop per request
async def _serving(request: Request) -> OpenAIServingChat:
    return request.app.state.chat_serving


Serving = Annotated[OpenAIServingChat, Depends(_serving)]

_STREAM_DOC = {
    200: {
        "description": "A chat.completion, or with `stream: true` server-sent events, one chat.completion.chunk "
        "per `data:` line, ended by `data: [DONE]`.",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }
}


@router.post("/completions", response_model=ChatCompletion, responses=_STREAM_DOC)
async def create_chat_completion(
    body: ChatCompletionRequest, request: Request, caller: CallerDep, serving: Serving
) -> ChatCompletion | StreamingResponse:
    """Answers a conversation with a base, fine-tuned (``ft:...``) or checkpoint model; streams with ``stream``."""
    return await serving.create(caller, body, request)
