"""The object store interface every service uses for blobs, and what all backends share.

Files, checkpoints, adapters and result files live in an object store: a MinIO/S3 bucket
in production, a local directory by default. Services only see :class:`ObjectStore`;
the backends (:mod:`.filesystem`, :mod:`.s3`) implement a handful of ``_``-prefixed
primitives, and this module does everything that must behave the same on both:

* every key is validated here, once, before a backend sees it;
* size and sha256 are computed here as the bytes stream past (:class:`ContentMeter`);
* the convenience forms (``put_bytes``, ``put_file``, ``get_bytes``, ``get_file``,
  ``exists``) are written once on top of the streaming primitives.

The promises every backend keeps: objects are streamed (memory stays bounded however
large they are), and an object is visible only once complete; a failed, aborted or
cancelled ``put`` leaves nothing behind (see :meth:`ObjectStore.put`).

A process killed mid-``put`` cannot clean up after itself: its temporary file or
incomplete multipart upload stays. :meth:`ObjectStore.remove_abandoned_uploads` removes
those; services that write call it at start-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
from abc import ABC, abstractmethod
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TypeVar

import structlog

from services.common.errors import InvalidArgument, NotFound, Unavailable
from services.common.object_store.temp_files import commit_temp_file, discard_temp_file, open_temp_file

log = structlog.get_logger(__name__)

T = TypeVar("T")

MAX_KEY_BYTES = 1024
# Longer segments could not be file names (NAME_MAX) in the filesystem backend; refusing
# them everywhere keeps the set of valid keys the same on every backend.
MAX_SEGMENT_BYTES = 255
DEFAULT_CHUNK_SIZE = 1 << 20

_SEGMENT = re.compile(r"[A-Za-z0-9._=-]+")


@dataclass(frozen=True)
class StoredObject:
    """What the store knows about one object.

    ``sha256`` (hex) is always set by ``put*`` and ``get_file``, which see every byte;
    ``stat`` and ``list`` leave it ``None`` because neither backend keeps it.
    ``last_modified`` is Unix seconds, ``None`` when the backend does not report it.
    """

    key: str
    size: int
    sha256: str | None = None
    last_modified: float | None = None


class ObjectNotFound(NotFound):
    """No object has this key."""

    default_code = "object_not_found"


class ObjectStoreUnavailable(Unavailable):
    """The store could not be reached, or failed while serving the request."""


def validate_key(key: str) -> str:
    """Return ``key`` if it is a valid object key, else raise InvalidArgument(param="key").

    Keys are ``/``-separated segments of ``[A-Za-z0-9._=-]+`` (at most 255 bytes each,
    1024 in all): no empty, ``.`` or ``..`` segment and no leading ``/``, so a key maps to
    the same path on every backend and can never climb out of the filesystem backend's root.
    """
    problem = _key_problem(key)
    if problem:
        raise InvalidArgument(f"invalid object key {_shorten(key)}: {problem}", param="key")
    return key


def validate_prefix(prefix: str) -> str:
    """Return ``prefix`` if some valid key starts with it, else raise InvalidArgument(param="prefix").

    The last segment may be partial (``orgs/o1/fi``) or empty (``orgs/o1/``); the empty
    prefix matches every key.
    """
    # When some valid key extends the prefix, the prefix itself or the prefix plus one
    # more character is one.
    if prefix and not (is_valid_key(prefix) or is_valid_key(prefix + "x")):
        raise InvalidArgument(
            f"invalid object key prefix {_shorten(prefix)}: no valid key starts with it", param="prefix"
        )
    return prefix


def is_valid_key(key: str) -> bool:
    """Whether ``key`` is a valid object key (see :func:`validate_key`)."""
    return _key_problem(key) is None


def _key_problem(key: object) -> str | None:
    if not isinstance(key, str) or not key:
        return "must be a non-empty string"
    if key.startswith("/"):
        return "must not start with '/'"
    if len(key.encode()) > MAX_KEY_BYTES:
        return f"longer than {MAX_KEY_BYTES} bytes"
    for segment in key.split("/"):
        if not segment:
            return "has an empty segment"
        if segment in (".", ".."):
            return f"has a {segment!r} segment"
        if not _SEGMENT.fullmatch(segment):
            return f"segment {_shorten(segment)} has characters outside A-Z a-z 0-9 . _ = -"
        if len(segment) > MAX_SEGMENT_BYTES:  # ASCII by now: characters are bytes
            return f"has a segment longer than {MAX_SEGMENT_BYTES} bytes"
    return None


def _shorten(text: object, limit: int = 80) -> str:
    shown = repr(text)
    return shown if len(shown) <= limit else shown[: limit - 5] + "...'"


class ContentMeter:
    """Counts and hashes bytes as they stream through, so no backend needs a second pass."""

    def __init__(self) -> None:
        self.size = 0
        self._hash = hashlib.sha256()

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def update(self, chunk: bytes) -> None:
        self._hash.update(chunk)
        self.size += len(chunk)

    async def measure(self, chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
        """Yield ``chunks`` unchanged (empty ones dropped), metering each on the way."""
        async for chunk in chunks:
            if chunk:
                self.update(chunk)
                yield chunk


class ObjectStore(ABC):
    """A flat namespace of immutable blobs, streamed in and out.

    Public methods validate their arguments and delegate to the backend's ``_``-prefixed
    primitives. Every method is a coroutine (or an async iterator) that never blocks
    the event loop.
    """

    # Backends implement these; keys and prefixes reaching them are already validated.

    @abstractmethod
    async def _put(self, key: str, chunks: AsyncIterable[bytes], content_type: str) -> float | None:
        """Store ``chunks`` under ``key`` atomically; return the last-modified time if known."""

    @abstractmethod
    def _get(self, key: str, offset: int, length: int | None, chunk_size: int) -> AsyncIterator[bytes]:
        """Yield the object's bytes in ``[offset, offset + length)``; nothing past its end."""

    @abstractmethod
    async def _stat(self, key: str) -> StoredObject: ...

    @abstractmethod
    async def _delete(self, key: str) -> bool: ...

    @abstractmethod
    def _list(self, prefix: str) -> AsyncIterator[StoredObject]:
        """Yield the objects whose key starts with ``prefix``, sorted by key."""

    @abstractmethod
    async def _remove_abandoned_uploads(
        self, prefix: str, older_than_s: float, matching: Callable[[str], bool]
    ) -> int:
        """Remove the unfinished uploads of dead writers under ``prefix`` whose key is ``matching``."""

    async def _delete_prefix(self, prefix: str) -> int:
        # One by one; a backend with a batch delete overrides this.
        keys = [stored.key async for stored in self._list(prefix)]
        deleted = 0
        for key in keys:
            if await self._delete(key):
                deleted += 1
        return deleted

    @abstractmethod
    async def check(self) -> None:
        """Readiness probe: return if the store can serve requests, else raise ObjectStoreUnavailable."""

    @abstractmethod
    async def close(self) -> None:
        """Release connections and threads; the store must not be used afterwards."""

    # The public interface.

    async def put(
        self,
        key: str,
        chunks: AsyncIterable[bytes],
        *,
        content_type: str = "application/octet-stream",
    ) -> StoredObject:
        """Stream ``chunks`` into the object ``key``, replacing any previous one.

        The object becomes visible only once every chunk is stored. If ``chunks`` raises
        (the client went away), the store fails or the caller is cancelled, the exception
        propagates and nothing is left behind: the backend removes its temporary file or
        aborts its multipart upload, and a cancellation that arrives during the last step
        (the rename, the multipart completion, which cannot be interrupted halfway) waits
        for that step and deletes what it stored. Store failures surface as
        :class:`ObjectStoreUnavailable`.
        """
        validate_key(key)
        meter = ContentMeter()
        async with contextlib.aclosing(meter.measure(chunks)) as measured:
            last_modified = await self._put(key, measured, content_type)
        return StoredObject(key, meter.size, meter.sha256, last_modified)

    async def put_bytes(self, key: str, data: bytes, **kw: str) -> StoredObject:
        """Store ``data`` (already in memory) as the object ``key``."""

        async def single_chunk() -> AsyncIterator[bytes]:
            yield data

        return await self.put(key, single_chunk(), **kw)

    async def put_file(self, key: str, path: str | Path, **kw: str) -> StoredObject:
        """Stream the local file ``path`` into the object ``key``, a chunk at a time."""
        # Opened before the upload starts, so a missing file fails before any store work.
        source = await asyncio.to_thread(open, path, "rb")
        try:
            return await self.put(key, _read_chunks(source), **kw)
        finally:
            source.close()

    def get(
        self,
        key: str,
        *,
        offset: int = 0,
        length: int | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> AsyncIterator[bytes]:
        """Stream the object's bytes, optionally only ``length`` bytes from ``offset``.

        A range running past the end of the object is cut short; one starting past it
        yields nothing. A missing object raises ObjectNotFound on the first iteration.
        """
        validate_key(key)
        if offset < 0:
            raise InvalidArgument(f"offset must be >= 0, got {offset}", param="offset")
        if length is not None and length < 0:
            raise InvalidArgument(f"length must be >= 0, got {length}", param="length")
        if chunk_size <= 0:
            raise InvalidArgument(f"chunk_size must be > 0, got {chunk_size}", param="chunk_size")
        return self._get(key, offset, length, chunk_size)

    async def get_bytes(self, key: str) -> bytes:
        """The whole object, in memory: only for objects known to be small."""
        return b"".join([chunk async for chunk in self.get(key)])

    async def get_file(self, key: str, path: str | Path) -> StoredObject:
        """Download the object to the local file ``path``, streaming.

        ``path`` appears complete or not at all: bytes go to a temporary file beside it,
        which replaces ``path`` only once everything arrived and was synced to disk.
        """
        target = Path(path)
        meter = ContentMeter()
        temp_file = await asyncio.to_thread(open_temp_file, target)
        try:
            async with contextlib.aclosing(self.get(key)) as chunks:
                async for chunk in chunks:
                    meter.update(chunk)
                    await asyncio.to_thread(temp_file.write, chunk)
            await asyncio.to_thread(commit_temp_file, temp_file, target)
        except BaseException:
            discard_temp_file(temp_file)
            raise
        return StoredObject(key, meter.size, meter.sha256)

    async def stat(self, key: str) -> StoredObject:
        """Size and last-modified time of the object; ObjectNotFound if there is none."""
        return await self._stat(validate_key(key))

    async def exists(self, key: str) -> bool:
        try:
            await self.stat(key)
        except ObjectNotFound:
            return False
        return True

    async def delete(self, key: str) -> bool:
        """Delete the object; True if it existed. Deleting a missing key is not an error."""
        return await self._delete(validate_key(key))

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every object whose key starts with ``prefix``; return how many.

        An empty prefix is refused: emptying the whole store is never what a caller means.
        """
        if not prefix:
            raise InvalidArgument("refusing to delete with an empty prefix (every object)", param="prefix")
        return await self._delete_prefix(validate_prefix(prefix))

    async def remove_abandoned_uploads(
        self,
        prefix: str,
        *,
        older_than_s: float,
        matching: Callable[[str], bool] = lambda key: True,
    ) -> int:
        """Remove what killed writers left under ``prefix``: temporary files, incomplete multipart uploads.

        Only uploads whose key is ``matching`` are touched; returns how many were removed.
        The filesystem backend tells a live upload from a dead one exactly (a writer holds a
        lock on its temporary file, which the kernel drops when the process dies) and
        removes every dead one. S3 cannot tell: it aborts only the multipart uploads started
        more than ``older_than_s`` ago, which must be longer than any upload may last, or it
        would abort the uploads of other processes writing to the same bucket.
        """
        if older_than_s < 0:
            raise InvalidArgument(f"older_than_s must be >= 0, got {older_than_s}", param="older_than_s")
        return await self._remove_abandoned_uploads(validate_prefix(prefix), older_than_s, matching)

    async def _complete_or_remove(self, key: str, last_step: Awaitable[T]) -> T:
        """Run a put's last step (a rename, a multipart completion) to its end, even if cancelled.

        Such a step runs in a worker thread or on the server, where a cancellation cannot
        reach it: abandoned, it could still finish unobserved and leave an object nobody
        asked for. So a cancelled caller waits for it (shielded from further cancellation)
        and deletes what it stored before the cancellation goes on.
        """
        step = asyncio.ensure_future(last_step)
        try:
            return await asyncio.shield(step)
        except asyncio.CancelledError:
            await asyncio.shield(self._remove_once_settled(step, key))
            raise

    async def _remove_once_settled(self, step: asyncio.Future[object], key: str) -> None:
        try:
            await step
        except BaseException:
            return  # it failed, so it stored nothing
        try:
            await self._delete(key)
        except Exception as exc:
            log.error(
                "object_store.orphaned", key=key, error=str(exc), note="the put was cancelled as it completed"
            )

    def list(self, prefix: str = "") -> AsyncIterator[StoredObject]:
        """The objects whose key starts with ``prefix``, sorted by key.

        On S3 the order is the server's, which S3 defines as key order (UTF-8 bytes);
        some S3-compatible servers list in directory-walk order instead (SeaweedFS:
        ``a/b`` before ``a-c``; see docs/object_store.md). Callers that need an order
        across ``/`` boundaries sort for themselves.
        """
        return self._list(validate_prefix(prefix))


async def _read_chunks(source: IO[bytes], chunk_size: int = DEFAULT_CHUNK_SIZE) -> AsyncIterator[bytes]:
    while chunk := await asyncio.to_thread(source.read, chunk_size):
        yield chunk
