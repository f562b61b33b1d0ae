"""What the dataset service does with files, independent of gRPC: upload, read, list, delete, count.

:class:`FileService` ties the object store (bytes), the records (:mod:`.records`), the
upload flow (:mod:`.uploads`) and token counting (:mod:`.statistics`) together. Every
method takes the caller's organization explicitly and never reaches another's files.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from services.common.errors import FailedPrecondition, InvalidArgument
from services.common.object_store import ObjectNotFound, ObjectStore, open_object_store
from services.common.settings import MiB
from services.dataset.config import DatasetSettings
from services.dataset.parallel_validation import ValidationPool
from services.dataset.records import FileNotFound, FilePurpose, FileRecord, FileRecords
from services.dataset.statistics import TokenCounter, TokenStatistics
from services.dataset.uploads import UploadMetadata, UploadTrailer, receive_upload
from services.dataset.validation import FileStatistics

MAX_LIST_LIMIT = 10_000  # OpenAI's bound, and its default
# Download chunks stay well under the gRPC message limit, proto framing included.
DOWNLOAD_CHUNK_BYTES = 1 * MiB


class FileService:
    """The dataset service's operations on files."""

    def __init__(self, settings: DatasetSettings, store: ObjectStore, records: FileRecords) -> None:
        self.settings = settings
        self.store = store
        self.records = records
        self.validation_pool = ValidationPool(settings.dataset_validation_processes)
        self.tokens = TokenCounter(settings)
        self.download_chunk_bytes = min(DOWNLOAD_CHUNK_BYTES, settings.grpc_max_message_bytes // 2)

    @classmethod
    def open(cls, settings: DatasetSettings) -> FileService:
        """The service over the object store and database the settings name (connects lazily)."""
        return cls(settings, open_object_store(settings), FileRecords.open(settings))

    async def upload(
        self,
        organization_id: str,
        metadata: UploadMetadata,
        chunks: AsyncIterator[bytes],
        trailer: UploadTrailer,
    ) -> FileRecord:
        """Store a file streamed in ``chunks``; returns its record, processed or error.

        ``trailer`` is filled in by the stream as it ends (see :class:`UploadTrailer`).
        """
        return await receive_upload(
            organization_id,
            metadata,
            chunks,
            trailer,
            store=self.store,
            records=self.records,
            validation_pool=self.validation_pool,
            settings=self.settings,
        )

    async def get(self, organization_id: str, file_id: str) -> FileRecord:
        return await self.records.get(organization_id, file_id)

    async def list(
        self,
        organization_id: str,
        *,
        purpose: FilePurpose | None = None,
        after: str | None = None,
        limit: int = 0,
        newest_first: bool = True,
    ) -> tuple[Sequence[FileRecord], bool]:
        """A page of files (``limit`` 0 means 10 000) and whether more follow."""
        if not 0 <= limit <= MAX_LIST_LIMIT:
            raise InvalidArgument(f"limit must be between 1 and {MAX_LIST_LIMIT}", param="limit")
        return await self.records.list(
            organization_id,
            purpose=purpose,
            after=after,
            limit=limit or MAX_LIST_LIMIT,
            newest_first=newest_first,
        )

    async def delete(self, organization_id: str, file_id: str) -> None:
        """Delete the file's object, then its record.

        In that order so that a store failure leaves the file intact and deletable again,
        rather than a record gone and its bytes orphaned in the store.
        """
        record = await self.records.get(organization_id, file_id)
        await self.store.delete(record.object_key)
        await self.records.delete(organization_id, file_id)

    async def open_content(
        self, organization_id: str, file_id: str, *, offset: int = 0, length: int = 0
    ) -> tuple[FileRecord, AsyncIterator[bytes]]:
        """The record and a stream of its bytes from ``offset`` (``length`` 0: to the end)."""
        if offset < 0:
            raise InvalidArgument("offset must not be negative", param="offset")
        if length < 0:
            raise InvalidArgument("length must not be negative", param="length")
        record = await self.records.get(organization_id, file_id)
        return record, self._content(record, offset, length or None)

    async def statistics(
        self, organization_id: str, file_id: str, base_model: str = ""
    ) -> tuple[FileStatistics, TokenStatistics | None]:
        """A processed fine-tuning file's statistics, with token counts when ``base_model`` is named."""
        record = await self.records.get(organization_id, file_id)
        statistics = record.file_statistics
        if statistics is None:
            if record.purpose != FilePurpose.FINE_TUNE:
                raise FailedPrecondition(
                    f"File {file_id} has purpose {record.purpose}; statistics exist only for fine-tune files",
                    param="file_id",
                )
            raise FailedPrecondition(
                f"File {file_id} has status {record.status}; statistics exist only for processed files",
                param="file_id",
            )
        if not base_model:
            return statistics, None
        tokens = await self.tokens.count(base_model, statistics.format, self._content(record, 0, None))
        return statistics, tokens

    async def check(self) -> None:
        """Readiness: the object store and the database both answer."""
        await self.store.check()
        await self.records.check()

    async def close(self) -> None:
        self.validation_pool.close()
        await self.store.close()
        await self.records.close()

    async def _content(self, record: FileRecord, offset: int, length: int | None) -> AsyncIterator[bytes]:
        try:
            async for chunk in self.store.get(
                record.object_key, offset=offset, length=length, chunk_size=self.download_chunk_bytes
            ):
                yield chunk
        except ObjectNotFound as error:
            # Deleted between reading the record and reading the bytes.
            raise FileNotFound(record.id) from error
