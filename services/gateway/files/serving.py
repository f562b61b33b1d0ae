"""Files: OpenAI's /v1/files semantics over the dataset service.

Uploads stream: multipart events from :mod:`.multipart` become the client stream of
``DatasetService.UploadFile`` (the metadata message, the bytes re-cut into chunks of
:data:`UPLOAD_CHUNK_BYTES`, then an end message with the file's SHA-256), so neither the
gateway nor the dataset service holds a file.
Form fields may come in any order. The SDK sends ``purpose`` before ``file``; a client
that sends the file first has it held until ``purpose`` arrives, up to
:data:`MAX_BYTES_BEFORE_PURPOSE`, then gets a 400. ``expires_after[...]`` fields that
follow the file (as in OpenAI's own curl example) travel in the stream's end message
instead of its metadata, and the dataset service applies them when it commits the record,
so nothing waits for them. A field given twice keeps its first value. A body
that breaks off, or grows past ``gateway_max_upload_bytes``, cancels the upstream call,
and the dataset service then stores nothing.

A fine-tuning file with bad lines is still stored, with status ``error`` and
``status_details`` naming the first bad lines, as OpenAI does (it validates after upload).
Creating a job with it is then a 400 that names the lines (see :mod:`..fine_tuning.serving`).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from urllib.parse import quote

import grpc
from fastapi import Request
from fastapi.responses import StreamingResponse

from services.common.errors import shown
from services.gateway.auth import Caller
from services.gateway.config import GatewaySettings
from services.gateway.errors import OpenAIError, from_rpc_error, invalid_request
from services.gateway.files.multipart import Event, FileData, FileEnd, FileStart, FormField, MultipartReader
from services.gateway.files.protocol import PURPOSES, UPLOAD_PURPOSES, FileDeleted, FileList, FileObject
from services.gateway.upstream import Upstreams
from tailor.dataset.v1 import dataset_service_pb2 as pb

UPLOAD_CHUNK_BYTES = 1024 * 1024
MAX_BYTES_BEFORE_PURPOSE = 4 * 1024 * 1024
# Room for the multipart framing and the other fields when checking Content-Length early.
MULTIPART_OVERHEAD_BYTES = 64 * 1024
_EXPIRES_AFTER_SECONDS = range(3600, 2592000 + 1)


def _too_large(limit: int) -> OpenAIError:
    return invalid_request(
        f"The file is larger than the maximum upload size of {limit} bytes.",
        param="file",
        code="file_too_large",
    )


class UploadForm:
    """The upload's form fields, checked as OpenAI checks them, turned into the stream's metadata and end."""

    def __init__(self) -> None:
        self.fields: dict[str, str] = {}
        self.filename: str | None = None
        self.file_ended = False
        self._expiry_sent = False  # in the metadata: both expires_after fields came before it

    def start_file(self, part_name: str, filename: str) -> None:
        if part_name != "file" or self.filename is not None:
            raise invalid_request("Send exactly one file, in a part named 'file'.", param=part_name)
        self.filename = filename or "upload"

    def ready(self) -> bool:
        """Whether the metadata can be sent: the file has begun and ``purpose`` is known."""
        return self.filename is not None and "purpose" in self.fields

    def check_complete(self) -> None:
        """400 for a body that ended without a whole file or without ``purpose``."""
        for name, present in (("file", self.file_ended), ("purpose", "purpose" in self.fields)):
            if not present:
                raise invalid_request(
                    f"Missing required parameter: '{name}'.", param=name, code="missing_required_parameter"
                )

    def metadata(self) -> pb.UploadFileMetadata:
        purpose = self.fields["purpose"]
        if purpose not in UPLOAD_PURPOSES:
            raise invalid_request(
                f"'{shown(purpose)}' is not one of {list(UPLOAD_PURPOSES)} - 'purpose'",
                param="purpose",
                code="invalid_value",
            )
        assert self.filename is not None
        if purpose == "fine-tune" and not self.filename.lower().endswith(".jsonl"):
            raise invalid_request(
                f"Invalid file format for Fine-Tuning API. Must be .jsonl (got '{shown(self.filename)}').",
                param="file",
                code="invalid_file_format",
            )
        metadata = pb.UploadFileMetadata(filename=self.filename, purpose=PURPOSES[purpose])
        if "expires_after[anchor]" in self.fields and "expires_after[seconds]" in self.fields:
            metadata.expires_after_seconds = self._expires_after_seconds()  # type: ignore[assignment]
            self._expiry_sent = True
        return metadata

    def late_expires_after_seconds(self) -> int | None:
        """The expiry that was not complete when the metadata went out, for the end message."""
        return None if self._expiry_sent else self._expires_after_seconds()

    def _expires_after_seconds(self) -> int | None:
        anchor = self.fields.get("expires_after[anchor]")
        seconds = self.fields.get("expires_after[seconds]")
        if anchor is None and seconds is None:
            return None
        if anchor != "created_at":
            raise invalid_request(
                "expires_after[anchor] must be 'created_at'.",
                param="expires_after.anchor",
                code="invalid_value",
            )
        if seconds is None or not seconds.isdigit() or int(seconds) not in _EXPIRES_AFTER_SECONDS:
            raise invalid_request(
                "expires_after[seconds] must be an integer between 3600 and 2592000.",
                param="expires_after.seconds",
                code="invalid_value",
            )
        return int(seconds)


class Upload:
    """One upload in flight: the client stream to the dataset service and the bytes not yet sent."""

    def __init__(self, upstreams: Upstreams, settings: GatewaySettings) -> None:
        self._upstreams = upstreams
        self._settings = settings
        self._call: grpc.aio.StreamUnaryCall | None = None
        self._pending = bytearray()
        self._sha256 = hashlib.sha256()
        self._received = 0

    @property
    def started(self) -> bool:
        return self._call is not None

    async def start(self, metadata: pb.UploadFileMetadata) -> None:
        """Opens the stream and sends what was held while waiting for ``purpose``."""
        self._call = self._upstreams.files.UploadFile(timeout=self._settings.gateway_transfer_timeout_s)
        await self._write(pb.UploadFileRequest(metadata=metadata))
        await self._flush(final=False)

    async def add(self, data: bytes) -> None:
        """Takes the next bytes; sends them once a whole chunk is there (and the stream is open)."""
        self._received += len(data)
        if self._received > self._settings.gateway_max_upload_bytes:
            raise _too_large(self._settings.gateway_max_upload_bytes)
        self._pending += data
        self._sha256.update(data)
        if self._call is not None:
            await self._flush(final=False)
        elif len(self._pending) > MAX_BYTES_BEFORE_PURPOSE:
            raise invalid_request("The 'purpose' field must come before the file part.", param="purpose")

    async def finish(self, expires_after_seconds: int | None) -> pb.File:
        """Sends the rest and the end (with an expiry learnt after the metadata); returns the record."""
        assert self._call is not None
        await self._flush(final=True)
        # Only an explicit end makes the upload complete: gRPC shows the dataset service a
        # cancelled stream as an ordinary end, and the digest catches bytes lost on the way.
        end = pb.UploadFileEnd(sha256=self._sha256.hexdigest(), expires_after_seconds=expires_after_seconds)
        await self._write(pb.UploadFileRequest(end=end))
        await self._call.done_writing()
        response: pb.UploadFileResponse = await self._call
        return response.file

    def abort(self) -> None:
        """Cancels the upstream call if it has not ended (the dataset service then stores nothing)."""
        if self._call is not None and not self._call.done():
            self._call.cancel()

    async def _flush(self, *, final: bool) -> None:
        assert self._call is not None
        while len(self._pending) >= UPLOAD_CHUNK_BYTES or (final and self._pending):
            chunk = bytes(self._pending[:UPLOAD_CHUNK_BYTES])
            del self._pending[:UPLOAD_CHUNK_BYTES]
            await self._write(pb.UploadFileRequest(chunk=chunk))

    async def _write(self, message: pb.UploadFileRequest) -> None:
        """Sends one message; if the call has ended meanwhile, raises the error it ended with."""
        assert self._call is not None
        try:
            await self._call.write(message)
        except asyncio.InvalidStateError:
            # The call ended before this write: the dataset service answered early (it refused
            # the file) or went away. Its status says which.
            await self._call
            raise  # ended with OK although the upload is incomplete: a bug, left to be a 500


class OpenAIServingFiles:
    """Handles /v1/files and its sub-routes."""

    def __init__(self, upstreams: Upstreams, settings: GatewaySettings) -> None:
        self._upstreams = upstreams
        self._settings = settings

    async def upload(self, caller: Caller, request: Request) -> FileObject:
        """Streams a multipart upload to the dataset service; see the module docstring."""
        limit = self._settings.gateway_max_upload_bytes
        announced = request.headers.get("content-length", "")
        if announced.isdigit() and int(announced) > limit + MULTIPART_OVERHEAD_BYTES:
            raise _too_large(limit)  # refused before reading a byte
        reader = MultipartReader(request.headers.get("content-type", ""), request.stream())
        form = UploadForm()
        upload = Upload(self._upstreams, self._settings)
        with caller.rpc_context():
            try:
                async for event in reader.events():
                    await self._take(event, form, upload)
                form.check_complete()
                record = await upload.finish(form.late_expires_after_seconds())
            except grpc.aio.AioRpcError as error:
                raise from_rpc_error(error) from None
            finally:
                upload.abort()
        return FileObject.from_record(record)

    @staticmethod
    async def _take(event: Event, form: UploadForm, upload: Upload) -> None:
        """Applies one multipart event; opens the upstream stream as soon as the metadata is known."""
        match event:
            case FormField(name=name, value=value):
                form.fields.setdefault(name, value)
            case FileStart(name=name, filename=filename):
                form.start_file(name, filename)
            case FileData(data=data):
                await upload.add(data)
            case FileEnd():
                form.file_ended = True
        if not upload.started and form.ready():
            await upload.start(form.metadata())

    async def list_files(
        self, caller: Caller, *, after: str | None, limit: int | None, order: str | None, purpose: str | None
    ) -> FileList:
        request = pb.ListFilesRequest(limit=limit or 0, after=after or "")
        if order is not None:
            request.order = pb.SORT_ORDER_ASCENDING if order == "asc" else pb.SORT_ORDER_DESCENDING
        if purpose is not None:
            if purpose not in PURPOSES:
                raise invalid_request(
                    f"'{shown(purpose)}' is not one of {list(PURPOSES)} - 'purpose'",
                    param="purpose",
                    code="invalid_value",
                )
            request.purpose = PURPOSES[purpose]
        with caller.rpc_context():
            response: pb.ListFilesResponse = await self._upstreams.files.ListFiles(request)
        return FileList.of([FileObject.from_record(f) for f in response.files], response.has_more)

    async def retrieve(self, caller: Caller, file_id: str) -> FileObject:
        with caller.rpc_context():
            response = await self._upstreams.files.GetFile(pb.GetFileRequest(file_id=file_id))
        return FileObject.from_record(response.file)

    async def delete(self, caller: Caller, file_id: str) -> FileDeleted:
        with caller.rpc_context():
            response = await self._upstreams.files.DeleteFile(pb.DeleteFileRequest(file_id=file_id))
        return FileDeleted(id=response.file_id or file_id, deleted=response.deleted)

    async def content(self, caller: Caller, file_id: str) -> StreamingResponse:
        """The file's raw bytes, streamed from the dataset service as they come."""
        with caller.rpc_context():
            call = self._upstreams.files.DownloadFile(
                pb.DownloadFileRequest(file_id=file_id), timeout=self._settings.gateway_transfer_timeout_s
            )
        # the first message is the record: failures before it (404 above all) are plain HTTP errors
        first = await call.read()
        if first is grpc.aio.EOF or not first.HasField("file"):
            call.cancel()
            raise OpenAIError(500, "The file's content could not be read.", type="server_error")
        record: pb.File = first.file

        async def body() -> AsyncIterator[bytes]:
            try:
                async for message in call:
                    yield message.chunk
            finally:
                call.cancel()  # a client that leaves mid-download stops the upstream stream

        filename = quote(record.filename or record.id, safe="")
        return StreamingResponse(
            body(),
            media_type="application/octet-stream",
            headers={
                "Content-Length": str(record.bytes),
                "Content-Disposition": f"attachment; filename*=UTF-8''{filename}",
            },
        )

