"""Routes of /v1/files."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from services.gateway.auth import CallerDep
from services.gateway.files.protocol import UPLOAD_PURPOSES, FileDeleted, FileList, FileObject
from services.gateway.files.serving import OpenAIServingFiles

router = APIRouter(prefix="/v1/files", tags=["files"])


# async: FastAPI would run a plain `def` dependency in its thread pool, a costly hop per request
async def _serving(request: Request) -> OpenAIServingFiles:
    return request.app.state.files_serving


Serving = Annotated[OpenAIServingFiles, Depends(_serving)]

# The upload body is read as a stream, not declared as parameters, so its schema is given here.
_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file", "purpose"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "purpose": {"type": "string", "enum": list(UPLOAD_PURPOSES)},
                        "expires_after[anchor]": {"type": "string", "enum": ["created_at"]},
                        "expires_after[seconds]": {"type": "integer", "minimum": 3600, "maximum": 2592000},
                    },
                }
            }
        },
    }
}


@router.post("", response_model=FileObject, openapi_extra=_UPLOAD_BODY)
async def create_file(request: Request, caller: CallerDep, serving: Serving) -> FileObject:
    """Uploads a file (multipart ``file`` + ``purpose``), streamed to the dataset service as it arrives."""
    return await serving.upload(caller, request)


@router.get("", response_model=FileList)
async def list_files(
    caller: CallerDep,
    serving: Serving,
    after: str | None = None,
    limit: Annotated[int | None, Query(ge=1, le=10000)] = None,
    order: Literal["asc", "desc"] | None = None,
    purpose: str | None = None,
) -> FileList:
    """Lists the organization's files, newest first by default, ``after`` a file id (exclusive)."""
    return await serving.list_files(caller, after=after, limit=limit, order=order, purpose=purpose)


@router.get("/{file_id}", response_model=FileObject)
async def retrieve_file(file_id: str, caller: CallerDep, serving: Serving) -> FileObject:
    """Returns one file's object."""
    return await serving.retrieve(caller, file_id)


@router.delete("/{file_id}", response_model=FileDeleted)
async def delete_file(file_id: str, caller: CallerDep, serving: Serving) -> FileDeleted:
    """Deletes a file's bytes and record."""
    return await serving.delete(caller, file_id)


@router.get(
    "/{file_id}/content",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}
    },
)
async def retrieve_file_content(file_id: str, caller: CallerDep, serving: Serving) -> StreamingResponse:
    """Streams a file's raw bytes (not JSON), as ``client.files.content(id)`` expects."""
    return await serving.content(caller, file_id)
