"""OpenAI's file objects, and the mapping from the dataset service's records.

``expires_at`` and ``status_details`` are optional strings and integers in OpenAI's
schema, never null: a file that never expires has no ``expires_at``, and a file without
problems no ``status_details`` (the SDK reads an absent field as ``None`` all the same).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from services.gateway.protocol import CursorPage
from tailor.dataset.v1 import dataset_service_pb2 as pb

# OpenAI's purpose strings <-> the contract's enum.
PURPOSES: dict[str, int] = {
    "fine-tune": pb.FILE_PURPOSE_FINE_TUNE,
    "fine-tune-results": pb.FILE_PURPOSE_FINE_TUNE_RESULTS,
    "assistants": pb.FILE_PURPOSE_ASSISTANTS,
    "assistants_output": pb.FILE_PURPOSE_ASSISTANTS_OUTPUT,
    "batch": pb.FILE_PURPOSE_BATCH,
    "batch_output": pb.FILE_PURPOSE_BATCH_OUTPUT,
    "vision": pb.FILE_PURPOSE_VISION,
    "user_data": pb.FILE_PURPOSE_USER_DATA,
    "evals": pb.FILE_PURPOSE_EVALS,
}
PURPOSE_NAMES: dict[int, str] = {value: name for name, value in PURPOSES.items()}
# What a user may upload; the *_output and results purposes are written by Tailor itself.
UPLOAD_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")

_STATUS_NAMES: dict[int, Literal["uploaded", "processed", "error"]] = {
    pb.FILE_STATUS_UNSPECIFIED: "uploaded",
    pb.FILE_STATUS_UPLOADED: "uploaded",
    pb.FILE_STATUS_PROCESSED: "processed",
    pb.FILE_STATUS_ERROR: "error",
}


class FileObject(BaseModel):
    """A stored file (``client.files.retrieve``)."""

    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: str
    status: Literal["uploaded", "processed", "error"]
    status_details: str | None = Field(None, exclude_if=lambda value: value is None)
    expires_at: int | None = Field(None, exclude_if=lambda value: value is None)

    @classmethod
    def from_record(cls, record: pb.File) -> FileObject:
        return cls(
            id=record.id,
            bytes=record.bytes,
            created_at=record.created_at,
            filename=record.filename,
            purpose=PURPOSE_NAMES.get(record.purpose, "user_data"),
            status=_STATUS_NAMES[record.status],
            status_details=record.status_details or None,
            expires_at=record.expires_at if record.HasField("expires_at") else None,
        )


class FileList(CursorPage[FileObject]):
    """A page of files, newest first unless ``order=asc``."""


class FileDeleted(BaseModel):
    """The answer to ``DELETE /v1/files/{id}``."""

    id: str
    object: Literal["file"] = "file"
    deleted: bool
