"""The upload flow: metadata checks, bytes streamed into the object store and validated on the way, the record.

An upload either ends with an object *and* its record, or leaves neither:

1. The metadata is checked before any byte is stored: filename, purpose, expiry, and the
   announced size against ``dataset_max_file_bytes`` (RESOURCE_EXHAUSTED).
2. The chunks stream into the object store (a multipart upload on S3, a temporary file on
   the filesystem), which makes the object visible only once complete. On the way they
   are counted against the size limit and, for purpose ``fine-tune``, handed to the
   validation. Any failure of the stream (a framing error, a stream without its end
   message, the limit, the store going away) or a cancelled call ends the store's upload
   with nothing stored: ``ObjectStore.put`` promises that, whatever interrupts it.
3. The verdict, the client's checksum, an expiry sent in the end message and the record
   follow. If any of them fails, the object (and a record committed just before a
   cancellation) is deleted again.

A process killed mid-upload leaves its unfinished upload in the store; the next one to
start removes it (``build_server`` in :mod:`.server` sweeps :func:`is_upload_key` keys).

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
from services.common.object_store import ObjectStore
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
    # An expiry the client learnt only after the bytes had started (a form field after the
    # file); checked and applied as the metadata's, which must then have none.
    expires_after_seconds: int | None = None


class ContentMismatch(TailorError):
    """The bytes received are not the bytes the client sent: their SHA-256 differs."""

    status_code = grpc.StatusCode.DATA_LOSS
    default_code = "checksum_mismatch"


def _check_expiry(expires_after: int | None) -> None:
    if expires_after is not None and not MIN_EXPIRES_AFTER_S <= expires_after <= MAX_EXPIRES_AFTER_S:
        raise InvalidArgument(
            f"expires_after seconds must be between {MIN_EXPIRES_AFTER_S} and {MAX_EXPIRES_AFTER_S}",
            param="expires_after",
        )


def _expires_after(metadata: UploadMetadata, trailer: UploadTrailer) -> int | None:
    """The expiry from the metadata or, given after the bytes, from the end; never both."""
    if trailer.expires_after_seconds is None:
        return metadata.expires_after_seconds
    if metadata.expires_after_seconds is not None:
        raise InvalidArgument(
            "expires_after was given in both the metadata and the end message; nothing was stored",
            param="expires_after",
        )
    _check_expiry(trailer.expires_after_seconds)
    return trailer.expires_after_seconds


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
    _check_expiry(metadata.expires_after_seconds)
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
        stored = await store.put(record.object_key, stream, content_type=_content_type(purpose))
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
        expires_after = _expires_after(metadata, trailer)
        if expires_after is not None:
            record.expires_at = record.created_at + expires_after
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



# Where the dataset service writes: ``orgs/{org}/files/{file_id}`` (records.object_key).
UPLOADS_PREFIX = "orgs/"


def is_upload_key(key: str) -> bool:
    """Whether ``key`` is where an uploaded file's bytes would be (under :data:`UPLOADS_PREFIX`)."""
    return key.split("/")[2:3] == ["files"]
