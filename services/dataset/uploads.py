"""The upload flow: metadata checks, bytes streamed into the object store and validated on the way, the record.

An upload either ends with an object *and* its record, or leaves neither:

1. The metadata is checked before any byte is stored: filename, purpose, expiry, and the
   announced size against ``dataset_max_file_bytes`` (RESOURCE_EXHAUSTED).
2. The chunks stream into the object store (a multipart upload on S3, a temporary file on
   the filesystem), which makes the object visible only once complete. On the way they
   are counted against the size limit and, for purpose ``fine-tune``, handed to the
   validation. Any failure of the stream (a framing error, a stream without its end
   message, the limit, the store going away) aborts the store's upload: no object appears.
3. The verdict, the client's checksum and the record follow. If any of them fails, the
   object (and a record committed just before a cancellation) is deleted again.

A cancelled call never interrupts the store halfway: its last step (completing a multipart
upload, renaming a file into place) could otherwise still finish unobserved. The store is
left to finish or abort on its own (a cut-off stream lacks its end message, so it aborts)
and whatever it stored is then removed.

Validation is CPU work: it runs in worker processes beside the stream (see
:mod:`.parallel_validation`), so checking overlaps with receiving and storing the bytes.
"""

from __future__ import annotations

import asyncio
import time
import unicodedata
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import structlog

from services.common.errors import InvalidArgument, ResourceExhausted, TailorError
from services.common.ids import new_id
from services.common.object_store import ObjectStore, StoredObject
from services.dataset.config import DatasetSettings
from services.dataset.parallel_validation import StreamValidation, ValidationPool
from services.dataset.records import FileNotFound, FilePurpose, FileRecord, FileRecords, FileStatus, now
from services.dataset.validation import ValidationResult

log = structlog.get_logger("tailor.dataset.uploads")

MAX_FILENAME_CHARS = 512
# OpenAI's bounds for expires_after[seconds]: one hour to thirty days.
MIN_EXPIRES_AFTER_S = 3600
MAX_EXPIRES_AFTER_S = 30 * 24 * 3600


@dataclass(frozen=True)
class UploadMetadata:
    """What the uploader says about a file before its bytes arrive."""

    filename: str
    purpose: FilePurpose | None
    expected_bytes: int | None = None
    expires_after_seconds: int | None = None


@dataclass
class UploadTrailer:
    """What the client says after the last chunk, filled in by the stream as it ends."""

    # Hex SHA-256 of the file as the client sent it; empty when it did not compute one.
    sha256: str = ""


class ContentMismatch(TailorError):
    """The bytes received are not the bytes the client sent: their SHA-256 differs."""

    status_code = grpc.StatusCode.DATA_LOSS
    default_code = "checksum_mismatch"


def check_metadata(metadata: UploadMetadata, max_file_bytes: int) -> FilePurpose:
    """Refuse bad metadata before anything is stored; returns the purpose, which is required."""
    filename = metadata.filename
    if not filename:
        raise InvalidArgument("filename is required", param="filename")
    if len(filename) > MAX_FILENAME_CHARS:
        raise InvalidArgument(f"filename is longer than {MAX_FILENAME_CHARS} characters", param="filename")
    if any(unicodedata.category(character) == "Cc" for character in filename):
        raise InvalidArgument("filename contains control characters", param="filename")
    if metadata.purpose is None:
        known = ", ".join(purpose.value for purpose in FilePurpose)
        raise InvalidArgument(f"purpose is required; one of {known}", param="purpose")
    expected = metadata.expected_bytes
    if expected is not None:
        if expected < 0:
            raise InvalidArgument("expected_bytes must not be negative", param="expected_bytes")
        if expected > max_file_bytes:
            raise _too_large(max_file_bytes)
    expires_after = metadata.expires_after_seconds
    if expires_after is not None and not MIN_EXPIRES_AFTER_S <= expires_after <= MAX_EXPIRES_AFTER_S:
        raise InvalidArgument(
            f"expires_after seconds must be between {MIN_EXPIRES_AFTER_S} and {MAX_EXPIRES_AFTER_S}",
            param="expires_after",
        )
    return metadata.purpose


async def receive_upload(
    organization_id: str,
    metadata: UploadMetadata,
    chunks: AsyncIterator[bytes],
    trailer: UploadTrailer,
    *,
    store: ObjectStore,
    records: FileRecords,
    validation_pool: ValidationPool,
    settings: DatasetSettings,
) -> FileRecord:
    """Store one uploaded file and its record; see the module docstring for the guarantees."""
    started = time.perf_counter()
    purpose = check_metadata(metadata, settings.dataset_max_file_bytes)
    record = FileRecord(
        id=new_id("file"),
        organization_id=organization_id,
        filename=metadata.filename,
        purpose=purpose.value,
        created_at=now(),
    )
    stream = _within_limits(chunks, settings.dataset_max_file_bytes, metadata.expected_bytes)
    validation = None
    if purpose is FilePurpose.FINE_TUNE:
        validation = StreamValidation(
            validation_pool,
            max_problems=settings.dataset_max_problems,
            max_line_bytes=settings.dataset_max_line_bytes,
        )
        stream = _validated(stream, validation)

    try:
        stored = await _store_whole(store, record.object_key, stream, _content_type(purpose))
    except BaseException:
        if validation is not None:
            validation.abandon()
        raise

    try:
        verdict = await validation.finish() if validation is not None else None
        if trailer.sha256 and trailer.sha256 != stored.sha256:
            raise ContentMismatch(
                f"the file's SHA-256 is {stored.sha256}, but the client sent {trailer.sha256[:64]!r}; "
                "nothing was stored",
                param="sha256",
            )
        record.bytes = stored.size
        record.sha256 = stored.sha256 or ""
        _record_verdict(record, verdict)
        if metadata.expires_after_seconds is not None:
            record.expires_at = record.created_at + metadata.expires_after_seconds
        await records.add(record)
    except BaseException:
        # Shielded: a cancelled call must still not leave an object behind.
        await asyncio.shield(_discard(record, store, records))
        raise
    log.info(
        "file stored",
        file_id=record.id,
        purpose=purpose.value,
        bytes=stored.size,
        status=record.status,
        problems=verdict.problem_count if verdict else 0,
        seconds=round(time.perf_counter() - started, 3),
    )
    return record


async def _store_whole(
    store: ObjectStore, key: str, stream: AsyncIterator[bytes], content_type: str
) -> StoredObject:
    """``store.put``, never interrupted halfway by a cancellation (see the module docstring)."""
    put = asyncio.ensure_future(store.put(key, stream, content_type=content_type))
    try:
        return await asyncio.shield(put)
    except asyncio.CancelledError:
        await asyncio.shield(_remove_once_settled(put, store, key))
        raise


async def _remove_once_settled(put: asyncio.Future[StoredObject], store: ObjectStore, key: str) -> None:
    """Wait for an abandoned put to end; delete the object if it stored one."""
    try:
        await put
    except BaseException:
        return  # it failed, so it stored nothing
    try:
        await store.delete(key)
    except Exception as exc:
        log.error(
            "could not delete the object of a cancelled upload; it is orphaned", key=key, error=str(exc)
        )


def _record_verdict(record: FileRecord, verdict: ValidationResult | None) -> None:
    """Status, details, problems and statistics from the validation (none: stored as is)."""
    record.problems = []
    record.statistics = None
    record.status_details = ""
    if verdict is None:
        # Only fine-tuning data has rules to check; other purposes are kept as they are.
        record.status = FileStatus.PROCESSED.value
    elif verdict.valid:
        record.status = FileStatus.PROCESSED.value
        record.statistics = FileRecord.statistics_column(verdict.statistics)
    else:
        record.status = FileStatus.ERROR.value
        record.status_details = verdict.summary()
        record.problems = FileRecord.problems_column(verdict.problems)


async def _within_limits(
    chunks: AsyncIterator[bytes], max_file_bytes: int, expected_bytes: int | None
) -> AsyncIterator[bytes]:
    """Pass the chunks on, failing the stream (so the upload aborts) when it breaks a limit."""
    received = 0
    async for chunk in chunks:
        received += len(chunk)
        if received > max_file_bytes:
            raise _too_large(max_file_bytes)
        if expected_bytes is not None and received > expected_bytes:
            raise _size_mismatch(expected_bytes, "more")
        yield chunk
    if expected_bytes is not None and received != expected_bytes:
        raise _size_mismatch(expected_bytes, str(received))


async def _validated(chunks: AsyncIterator[bytes], validation: StreamValidation) -> AsyncIterator[bytes]:
    """Pass the chunks on, handing each to the validation first (which checks it in the background)."""
    async for chunk in chunks:
        await validation.feed(chunk)
        yield chunk


async def _discard(record: FileRecord, store: ObjectStore, records: FileRecords) -> None:
    """Undo a stored upload whose record could not be written (or was, just before a cancellation)."""
    try:
        await records.delete(record.organization_id, record.id)
    except FileNotFound:
        pass  # the usual case: the record was never written
    except Exception as exc:  # the database is what failed; the object must go all the same
        log.warning("could not remove the record of a failed upload", file_id=record.id, error=str(exc))
    try:
        await store.delete(record.object_key)
    except Exception as exc:
        log.error(
            "could not delete the object of a failed upload; it is orphaned",
            file_id=record.id,
            key=record.object_key,
            error=str(exc),
        )


def _content_type(purpose: FilePurpose) -> str:
    return "application/jsonl" if purpose is FilePurpose.FINE_TUNE else "application/octet-stream"


def _too_large(max_file_bytes: int) -> ResourceExhausted:
    return ResourceExhausted(
        f"the file is larger than the {max_file_bytes}-byte limit of this service",
        param="file",
        code="file_too_large",
    )


def _size_mismatch(expected: int, received: str) -> InvalidArgument:
    return InvalidArgument(
        f"the upload announced {expected} bytes (expected_bytes) but {received} arrived",
        param="expected_bytes",
    )
