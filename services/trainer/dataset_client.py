"""The trainer's client of the dataset service: a file's record (does it fit a job?) and its bytes (an eval run's items).

Calls carry the organization of the call being served (or of the job, in background
work bound with ``call_context``), so another organization's file reads as missing.
GetFile is idempotent and retried on UNAVAILABLE; every call has the default deadline.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from services.common.errors import Unavailable
from services.common.grpc_client import idempotent, open_channel, rpc_error
from services.common.settings import CommonSettings
from tailor.dataset.v1 import dataset_service_pb2, dataset_service_pb2_grpc

_DATASET_SERVICE = dataset_service_pb2.DESCRIPTOR.services_by_name["DatasetService"]
# A malformed id is as good as a missing one: no such file.
_MISSING = (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT)


class DatasetFiles:
    """Looks up files in the dataset service."""

    def __init__(self, settings: CommonSettings) -> None:
        self._channel = open_channel(
            settings.dataset_addr,
            settings,
            idempotent_methods=idempotent(_DATASET_SERVICE.methods_by_name["GetFile"]),
        )
        self._stub = dataset_service_pb2_grpc.DatasetServiceStub(self._channel)

    async def get_file(self, file_id: str) -> dataset_service_pb2.File | None:
        """The file's record, or None when it does not exist in the current organization."""
        try:
            response = await self._stub.GetFile(dataset_service_pb2.GetFileRequest(file_id=file_id))
        except grpc.aio.AioRpcError as error:
            if error.code() in _MISSING:
                return None
            raise Unavailable(
                f"The dataset service could not be asked about file {file_id}: {rpc_error(error).message}"
            ) from error
        return response.file

    async def download(self, file_id: str) -> AsyncIterator[bytes]:
        """The file's bytes, chunk by chunk (the caller checked it exists); UNAVAILABLE when the stream breaks."""
        try:
            async for message in self._stub.DownloadFile(dataset_service_pb2.DownloadFileRequest(file_id=file_id)):
                if message.HasField("chunk"):
                    yield message.chunk
        except grpc.aio.AioRpcError as error:
            raise Unavailable(
                f"The dataset service could not send file {file_id}: {rpc_error(error).message}"
            ) from error

    async def close(self) -> None:
        await self._channel.close()
