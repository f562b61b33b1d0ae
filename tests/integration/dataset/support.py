"""Calls and checks the dataset service tests share: upload, download, and what a backend still holds."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from services.dataset.config import DatasetSettings
from tailor.dataset.v1 import dataset_service_pb2 as pb
from tailor.dataset.v1 import dataset_service_pb2_grpc as pb_grpc
from tests.support.s3_server import ACCESS_KEY, REGION, SECRET_KEY

USER = {"role": "user", "content": "What's the capital of France?"}
ASSISTANT = {"role": "assistant", "content": "Paris, as if everyone doesn't know that already."}
CHAT = {"messages": [{"role": "system", "content": "Marv is sarcastic."}, USER, ASSISTANT]}


def jsonl(*examples: Any) -> bytes:
    return "".join(json.dumps(example) + "\n" for example in examples).encode()


async def upload_requests(
    data: bytes,
    *,
    filename: str = "train.jsonl",
    purpose: int = pb.FILE_PURPOSE_FINE_TUNE,
    chunk_size: int = 1 << 20,
    expected_bytes: int | None = None,
    sha256: str = "",
) -> AsyncIterator[pb.UploadFileRequest]:
    """An upload stream as the gateway sends it: the metadata, the bytes in chunks, the end."""
    metadata = pb.UploadFileMetadata(filename=filename, purpose=purpose)
    if expected_bytes is not None:
        metadata.expected_bytes = expected_bytes
    yield pb.UploadFileRequest(metadata=metadata)
    for start in range(0, len(data), chunk_size):
        yield pb.UploadFileRequest(chunk=data[start : start + chunk_size])
    yield pb.UploadFileRequest(end=pb.UploadFileEnd(sha256=sha256))


async def upload(stub: pb_grpc.DatasetServiceStub, data: bytes, **options: Any) -> pb.File:
    response = await stub.UploadFile(upload_requests(data, **options))
    return response.file


async def download(stub: pb_grpc.DatasetServiceStub, file_id: str, **options: Any) -> tuple[pb.File, bytes]:
    """The record and the bytes DownloadFile streams back."""
    record, chunks = None, []
    async for message in stub.DownloadFile(pb.DownloadFileRequest(file_id=file_id, **options)):
        if message.WhichOneof("payload") == "file":
            assert record is None, "the record comes once, first"
            record = message.file
        else:
            assert record is not None, "the record comes before the bytes"
            chunks.append(message.chunk)
    assert record is not None
    return record, b"".join(chunks)


def leftovers(settings: DatasetSettings) -> list[str]:
    """Everything the object store holds, complete or not: files (temporary ones too) or S3
    objects and unfinished multipart uploads, seen directly rather than through Tailor's code."""
    if not settings.object_store_endpoint:
        root = settings.objects_dir
        return sorted(str(p.relative_to(root)) for p in Path(root).rglob("*") if p.is_file())
    import boto3  # only S3 tests pay for it

    client = boto3.client(
        "s3",
        endpoint_url=f"http://{settings.object_store_endpoint}",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name=REGION,
    )
    bucket = settings.object_store_bucket
    if bucket not in [b["Name"] for b in client.list_buckets()["Buckets"]]:
        return []
    objects = [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]
    uploads = [
        f"(unfinished) {u['Key']}" for u in client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    ]
    return sorted(objects + uploads)
