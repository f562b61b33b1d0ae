"""The dataset service's gRPC server: ``DatasetService`` over a :class:`~services.dataset.files.FileService`.

The servicer only translates: protobuf requests into plain calls with the caller's
organization, records into protobuf, enums both ways (:data:`PURPOSES` and friends are
the one mapping between the API's enums and the OpenAI strings the records hold).
Failures are domain errors raised below it; the shared interceptor maps them to statuses.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from enum import StrEnum
from typing import TypeVar

import grpc

from services.common.errors import InvalidArgument
from services.common.grpc_server import GrpcServer, ServiceRegistration
from services.common.object_store.sweep import AbandonedUploadSweep
from services.common.tenancy import current_organization
from services.common.training_format import ExampleFormat
from services.dataset.config import DatasetSettings
from services.dataset.files import FileService
from services.dataset.records import FilePurpose, FileRecord, FileStatus
from services.dataset.statistics import TokenStatistics
from services.dataset.uploads import UPLOADS_PREFIX, UploadMetadata, UploadTrailer, is_upload_key
from services.dataset.validation import FileStatistics
from tailor.dataset.v1 import dataset_service_pb2 as pb
from tailor.dataset.v1 import dataset_service_pb2_grpc as pb_grpc

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["DatasetService"].full_name

EnumT = TypeVar("EnumT", bound=StrEnum)


def _by_name(domain: type[EnumT], prefix: str, values: object) -> dict[EnumT, int]:
    """Pairs each domain member with the protobuf value of the same name (``PREFIX_MEMBER``)."""
    return {member: values.Value(f"{prefix}_{member.name}") for member in domain}  # type: ignore[attr-defined]


PURPOSES = _by_name(FilePurpose, "FILE_PURPOSE", pb.FilePurpose)
STATUSES = _by_name(FileStatus, "FILE_STATUS", pb.FileStatus)
FORMATS = _by_name(ExampleFormat, "EXAMPLE_FORMAT", pb.ExampleFormat)
_PURPOSES_FROM_PB = {value: purpose for purpose, value in PURPOSES.items()}


def purpose_from_pb(value: int) -> FilePurpose | None:
    """The purpose a request names; None for UNSPECIFIED or a value this build does not know."""
    return _PURPOSES_FROM_PB.get(value)


def file_to_pb(record: FileRecord) -> pb.File:
    message = pb.File(
        id=record.id,
        organization_id=record.organization_id,
        filename=record.filename,
        bytes=record.bytes,
        purpose=PURPOSES[FilePurpose(record.purpose)],
        status=STATUSES[FileStatus(record.status)],
        status_details=record.status_details,
        problems=[
            pb.ValidationProblem(line=problem.line, code=problem.code, message=problem.message)
            for problem in record.problem_list
        ],
        created_at=record.created_at,
        sha256=record.sha256,
    )
    if record.expires_at is not None:
        message.expires_at = record.expires_at
    statistics = record.file_statistics
    if statistics is not None:
        message.statistics.CopyFrom(statistics_to_pb(statistics))
    return message


def statistics_to_pb(statistics: FileStatistics) -> pb.FileStatistics:
    return pb.FileStatistics(
        format=FORMATS[statistics.format],
        examples=statistics.examples,
        messages=statistics.messages,
        characters=statistics.characters,
        trained_messages=statistics.trained_messages,
    )


def tokens_to_pb(tokens: TokenStatistics) -> pb.TokenStatistics:
    return pb.TokenStatistics(
        base_model=tokens.base_model,
        total_tokens=tokens.total_tokens,
        max_example_tokens=tokens.max_example_tokens,
        examples_over_max_length=tokens.examples_over_max_length,
    )


class DatasetServicer(pb_grpc.DatasetServiceServicer):
    """DatasetService: files of the calling organization, stored, validated, listed and served."""

    def __init__(self, files: FileService) -> None:
        self.files = files

    async def UploadFile(
        self, request_iterator: AsyncIterator[pb.UploadFileRequest], context: grpc.aio.ServicerContext
    ) -> pb.UploadFileResponse:
        """Store a client-streamed file (metadata, chunks, end); answer with its record."""
        organization = current_organization()
        trailer = UploadTrailer()
        try:
            metadata = await _upload_metadata(request_iterator)
            # An announced size delimits the stream itself (a shorter one is refused); without
            # one, only the end message tells a complete upload from a cancelled one.
            chunks = _upload_chunks(request_iterator, trailer, end_required=metadata.expected_bytes is None)
            record = await self.files.upload(organization, metadata, chunks, trailer)
        except Exception:
            await _drain(request_iterator)
            raise
        return pb.UploadFileResponse(file=file_to_pb(record))

    async def GetFile(
        self, request: pb.GetFileRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetFileResponse:
        """One file's record."""
        record = await self.files.get(current_organization(), _file_id(request.file_id))
        return pb.GetFileResponse(file=file_to_pb(record))

    async def ListFiles(
        self, request: pb.ListFilesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListFilesResponse:
        """A page of the organization's files, newest first unless asked otherwise."""
        purpose = None
        if request.purpose != pb.FILE_PURPOSE_UNSPECIFIED:
            purpose = purpose_from_pb(request.purpose)
            if purpose is None:
                raise InvalidArgument(f"unknown purpose {request.purpose}", param="purpose")
        if request.order not in (
            pb.SORT_ORDER_UNSPECIFIED,
            pb.SORT_ORDER_DESCENDING,
            pb.SORT_ORDER_ASCENDING,
        ):
            raise InvalidArgument(f"unknown order {request.order}", param="order")
        records, has_more = await self.files.list(
            current_organization(),
            purpose=purpose,
            after=request.after or None,
            limit=request.limit,
            newest_first=request.order != pb.SORT_ORDER_ASCENDING,
        )
        return pb.ListFilesResponse(files=[file_to_pb(record) for record in records], has_more=has_more)

    async def DeleteFile(
        self, request: pb.DeleteFileRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteFileResponse:
        """Delete a file's bytes and record."""
        file_id = _file_id(request.file_id)
        await self.files.delete(current_organization(), file_id)
        return pb.DeleteFileResponse(file_id=file_id, deleted=True)

    async def DownloadFile(
        self, request: pb.DownloadFileRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.DownloadFileResponse]:
        """The record, then the bytes (optionally a range of them) in chunks."""
        record, content = await self.files.open_content(
            current_organization(), _file_id(request.file_id), offset=request.offset, length=request.length
        )
        yield pb.DownloadFileResponse(file=file_to_pb(record))
        # Closed however the stream ends, so an abandoned download releases its store connection.
        async with contextlib.aclosing(content) as chunks:
            async for chunk in chunks:
                yield pb.DownloadFileResponse(chunk=chunk)

    async def GetFileStatistics(
        self, request: pb.GetFileStatisticsRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetFileStatisticsResponse:
        """A processed fine-tuning file's statistics, and token counts for a named base model."""
        statistics, tokens = await self.files.statistics(
            current_organization(), _file_id(request.file_id), request.base_model
        )
        response = pb.GetFileStatisticsResponse(statistics=statistics_to_pb(statistics))
        if tokens is not None:
            response.tokens.CopyFrom(tokens_to_pb(tokens))
        return response


async def _upload_metadata(requests: AsyncIterator[pb.UploadFileRequest]) -> UploadMetadata:
    """The upload's first message, which must be its metadata."""
    first = await anext(requests, None)
    if first is None:
        raise InvalidArgument(
            "empty upload: the stream must start with the file's metadata", param="metadata"
        )
    if first.WhichOneof("payload") != "metadata":
        raise InvalidArgument("the first message of an upload must be the file's metadata", param="metadata")
    metadata = first.metadata
    return UploadMetadata(
        filename=metadata.filename,
        purpose=purpose_from_pb(metadata.purpose),
        expected_bytes=metadata.expected_bytes if metadata.HasField("expected_bytes") else None,
        expires_after_seconds=(
            metadata.expires_after_seconds if metadata.HasField("expires_after_seconds") else None
        ),
    )


async def _upload_chunks(
    requests: AsyncIterator[pb.UploadFileRequest], trailer: UploadTrailer, *, end_required: bool
) -> AsyncIterator[bytes]:
    """The bytes of the chunk messages; the ``end`` message fills ``trailer``; anything else fails."""
    ended = False
    async for request in requests:
        payload = request.WhichOneof("payload")
        if ended:
            raise InvalidArgument("nothing may follow the end message of an upload", param="end")
        if payload == "chunk":
            yield request.chunk
        elif payload == "end":
            ended = True
            trailer.sha256 = request.end.sha256.lower()
            if request.end.HasField("expires_after_seconds"):
                trailer.expires_after_seconds = request.end.expires_after_seconds
        else:
            raise InvalidArgument(
                "after the metadata (sent once, first) come only chunks, then the end", param="metadata"
            )
    if end_required and not ended:
        # A cancelled call looks like this too: the bytes so far may be only part of the file.
        raise InvalidArgument(
            "the upload stream ended without its end message (and announced no expected_bytes); "
            "nothing was stored",
            param="end",
        )


async def _drain(requests: AsyncIterator[pb.UploadFileRequest]) -> None:
    """Read and drop what the client still sends, until it half-closes, before the call fails.

    A failure status sent while the client is still writing races with its writes: a write
    the server's end cuts off makes grpcio's aio client replace the call's status with its
    own INTERNAL "Internal error from Core" (``_AioCall.set_internal_error``, called from
    ``StreamUnaryCall._write``), so the client would lose why the upload failed. Once the
    client has sent everything, no write is left to fail. The client's deadline bounds the
    wait; a stream that already ended or broke ends the drain at once.
    """
    with contextlib.suppress(Exception):
        async for _ in requests:
            pass


def _file_id(file_id: str) -> str:
    if not file_id:
        raise InvalidArgument("file_id is required", param="file_id")
    return file_id


def dataset_registration(files: FileService) -> ServiceRegistration:
    """The DatasetService servicer over ``files``, ready for a GrpcServer."""
    return ServiceRegistration(
        SERVICE_NAME, pb_grpc.add_DatasetServiceServicer_to_server, DatasetServicer(files)
    )


class DatasetServer(GrpcServer):
    """The common server lifecycle; stopping it also closes the files' pool, store and database.

    Without that close, each shutdown left the validation workers' shared memory for
    multiprocessing's resource tracker to unlink, which it reports as leaked.
    """

    def __init__(self, settings: DatasetSettings, files: FileService) -> None:
        sweep = AbandonedUploadSweep(
            files.store, UPLOADS_PREFIX, settings.object_store_abandoned_upload_s, is_upload_key
        )
        super().__init__(
            settings,
            settings.dataset_listen,
            [dataset_registration(files)],
            readiness_checks=[files.check, sweep],
        )
        self.files = files

    async def stop(self) -> None:
        await super().stop()
        await self.files.close()


def build_server(settings: DatasetSettings) -> DatasetServer:
    """The dataset service: DatasetService, ready when both the object store and the database answer.

    Before it first reports ready, it removes what a killed predecessor's uploads left in
    the store (see :mod:`services.common.object_store.sweep`).
    """
    return DatasetServer(settings, FileService.open(settings))
