"""The S3 backend: MinIO or any S3-compatible store, through the MinIO SDK.

The SDK is synchronous, so every call runs in a worker thread and the event loop never
blocks. Uploads stream: the async side feeds chunks through a small bounded queue to a
thread running ``put_object`` with unknown length, which cuts the stream into multipart
parts (``object_store_part_size_mib``), so memory holds about one part at a time. An
object appears only when the multipart upload completes; if the stream or the store
fails first, ``put_object`` aborts the upload (checked in minio 7.2's ``put_object``:
it calls ``_abort_multipart_upload`` on any exception, then re-raises).

A cancellation while the upload completes waits for the completion and deletes the
object (see ``ObjectStore.put``). Two cases no client can clean up at once: the store
becoming unreachable mid-upload (the abort cannot reach it either) and the process being
killed. Their incomplete uploads stay on the server (invisible, but holding space) until
:meth:`S3ObjectStore.remove_abandoned_uploads`, which services that write run at
start-up, or the bucket's ``AbortIncompleteMultipartUpload`` lifecycle rule removes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import queue
import sys
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import structlog
import urllib3
from minio import Minio
from minio.datatypes import Upload
from minio.deleteobjects import DeleteObject
from minio.error import InvalidResponseError, S3Error, ServerError
from urllib3.response import BaseHTTPResponse

from services.common.object_store.base import (
    ObjectNotFound,
    ObjectStore,
    ObjectStoreUnavailable,
    StoredObject,
    is_valid_key,
)

log = structlog.get_logger(__name__)

# How long one HTTP exchange may stall. These bound how long a dead or hung endpoint can
# hold a call: a refused connection fails after the retries' backoff (about a second);
# an endpoint that accepts but never answers after (1 + _RETRIES) * _READ_TIMEOUT_S.
# MinIO and S3 keep slow responses (large CompleteMultipartUpload) alive with whitespace,
# so a healthy store never goes _READ_TIMEOUT_S without sending a byte.
_CONNECT_TIMEOUT_S = 5.0
_READ_TIMEOUT_S = 30.0
# Retries absorb a stale pooled connection or a store restarting; more only delay failure.
_RETRIES = 2
_RETRY_BACKOFF_S = 0.2

# Chunks waiting between the event loop and the upload thread, per upload. With 1 MiB
# chunks this adds 4 MiB to the part being assembled; more would not speed anything up.
_QUEUED_CHUNKS = 4
# An upload holds a thread for its whole duration, waiting on its producer, so uploads
# get their own threads: in the shared default executor (cpu_count + 4 threads) enough
# concurrent uploads whose chunks come from asyncio.to_thread (put_file) would starve
# their own producers and deadlock. Further uploads wait for a free thread.
_MAX_CONCURRENT_UPLOADS = 16
_HTTP_CONNECTIONS = 2 * _MAX_CONCURRENT_UPLOADS
# Objects fetched per worker-thread hop when listing (one S3 list page).
_LIST_BATCH = 1000


class _UploadAborted(Exception):
    """Raised inside put_object's thread when the producer gave up, so that it aborts."""


_END_OF_STREAM = object()
_ABORTED = object()


class _ChunkPipe:
    """A bounded hand-off of chunks from the event loop to the thread running put_object.

    The thread sees a file-like object whose ``read(n)`` blocks until n bytes, or the end
    of the stream, have arrived. The event loop side waits for room in the queue without
    holding a thread, so a slow store slows the producer down instead of filling memory.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, max_chunks: int) -> None:
        self._loop = loop
        self._queue: queue.Queue[object] = queue.Queue(maxsize=max_chunks)
        self._room = asyncio.Event()
        self._aborted = False
        self._reader_gone = False
        self._ended = False
        self._leftover = b""

    # Event loop side.

    async def send(self, chunk: bytes) -> bool:
        """Queue ``chunk``, waiting for room; False if the reader has stopped (it failed)."""
        return await self._send(chunk)

    async def send_end(self) -> bool:
        """Tell the reader the stream is complete."""
        return await self._send(_END_OF_STREAM)

    async def _send(self, item: object) -> bool:
        while not self._reader_gone:
            # Cleared before trying, so a read that frees room after a failed attempt
            # still wakes the wait below.
            self._room.clear()
            try:
                self._queue.put_nowait(item)
                return True
            except queue.Full:
                await self._room.wait()
        return False

    def abort(self) -> None:
        """Make the reader's next read raise, so that put_object aborts the upload."""
        self._aborted = True
        # Wakes a reader blocked on an empty queue; a full queue means it is not blocked,
        # and it checks the flag after every item it takes.
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(_ABORTED)

    # Worker thread side.

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (all, if negative); fewer only at the end of the stream."""
        wanted = size if size >= 0 else sys.maxsize
        pieces = []
        while wanted > 0 and not self._ended:
            if not self._leftover:
                item = self._queue.get()
                self._loop.call_soon_threadsafe(self._room.set)
                if self._aborted or item is _ABORTED:
                    raise _UploadAborted("the upload's data stream failed")
                if item is _END_OF_STREAM:
                    self._ended = True
                    break
                self._leftover = item  # type: ignore[assignment]
            piece, self._leftover = self._leftover[:wanted], self._leftover[wanted:]
            pieces.append(piece)
            wanted -= len(piece)
        return b"".join(pieces)

    def close_reader(self) -> None:
        """Called by the thread when put_object returned or raised: no more reads will come."""
        self._reader_gone = True
        self._loop.call_soon_threadsafe(self._room.set)


class S3ObjectStore(ObjectStore):
    """Objects in one bucket of MinIO or any S3-compatible store.

    The bucket is created on first use if it is missing: a convenience for local runs,
    where nothing else would create it (in Kubernetes a Job does).
    """

    def __init__(
        self,
        endpoint: str,
        bucket: str,
        *,
        access_key: str = "",
        secret_key: str = "",
        secure: bool = False,
        region: str = "",
        part_size: int = 16 * 1024 * 1024,
    ) -> None:
        self._endpoint = endpoint
        self._bucket = bucket
        self._region = region or None
        self._part_size = part_size
        self._http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=_CONNECT_TIMEOUT_S, read=_READ_TIMEOUT_S),
            retries=urllib3.Retry(
                total=_RETRIES, backoff_factor=_RETRY_BACKOFF_S, status_forcelist=(500, 502, 503, 504)
            ),
            maxsize=_HTTP_CONNECTIONS,
            cert_reqs="CERT_REQUIRED",
        )
        self._client = Minio(
            endpoint,
            access_key=access_key or None,
            secret_key=secret_key or None,
            secure=secure,
            region=self._region,
            http_client=self._http,
        )
        self._uploads = ThreadPoolExecutor(_MAX_CONCURRENT_UPLOADS, thread_name_prefix="object-store-upload")
        self._bucket_ready = False
        self._bucket_lock = asyncio.Lock()

    @property
    def endpoint(self) -> str:
        return self._endpoint

    @property
    def bucket(self) -> str:
        return self._bucket

    async def _put(self, key: str, chunks: AsyncIterable[bytes], content_type: str) -> float | None:
        await self._ensure_bucket()
        loop = asyncio.get_running_loop()
        pipe = _ChunkPipe(loop, _QUEUED_CHUNKS)
        upload = loop.run_in_executor(self._uploads, self._upload, key, pipe, content_type)
        try:
            async for chunk in chunks:
                if not await pipe.send(chunk):
                    break  # the upload failed; awaiting it below raises why
            else:
                await pipe.send_end()
        except BaseException:
            await self._abandon(key, pipe, upload)
            raise
        with self._store_errors("upload", key):
            await self._complete_or_remove(key, upload)
        # The completed upload's response carries no reliable modification time.
        return None

    def _upload(self, key: str, pipe: _ChunkPipe, content_type: str) -> None:
        try:
            self._client.put_object(
                self._bucket,
                key,
                data=pipe,
                length=-1,
                content_type=content_type,
                part_size=self._part_size,
                # Parallel part uploads would hold several parts in memory, and report a
                # failed part only once the whole stream had been read.
                num_parallel_uploads=1,
            )
        finally:
            pipe.close_reader()

    async def _abandon(self, key: str, pipe: _ChunkPipe, upload: asyncio.Future[None]) -> None:
        """Stop an upload whose data stream failed, and wait until its multipart upload is aborted."""
        pipe.abort()
        try:
            await upload
        except _UploadAborted:
            pass  # put_object aborted the multipart upload, then re-raised our signal
        except Exception as exc:
            log.warning(
                "object_store.abort_failed",
                key=key,
                error=str(exc),
                note="an incomplete multipart upload may remain until the bucket lifecycle removes it",
            )

    async def _get(self, key: str, offset: int, length: int | None, chunk_size: int) -> AsyncIterator[bytes]:
        await self._ensure_bucket()
        if length == 0:
            await self._stat(key)  # nothing to read, but a missing object is still an error
            return
        with self._store_errors("read", key):
            response = await asyncio.to_thread(self._open_range, key, offset, length)
        if response is None:
            return
        try:
            while True:
                with self._store_errors("read", key):
                    chunk = await asyncio.to_thread(response.read, chunk_size)
                if not chunk:
                    break
                yield chunk
        finally:
            response.close()
            response.release_conn()

    def _open_range(self, key: str, offset: int, length: int | None) -> BaseHTTPResponse | None:
        """Start a (ranged) GET; None when the range starts at or past the object's end."""
        try:
            return self._client.get_object(self._bucket, key, offset=offset, length=length or 0)
        except S3Error as exc:
            if exc.code == "InvalidRange":
                return None
            raise

    async def _stat(self, key: str) -> StoredObject:
        await self._ensure_bucket()
        with self._store_errors("stat", key):
            info = await asyncio.to_thread(self._client.stat_object, self._bucket, key)
        return StoredObject(key, info.size or 0, None, _timestamp(info.last_modified))

    async def _delete(self, key: str) -> bool:
        # S3 deletes succeed whether or not the key exists; asking first tells the caller which.
        try:
            await self._stat(key)
        except ObjectNotFound:
            return False
        with self._store_errors("delete", key):
            await asyncio.to_thread(self._client.remove_object, self._bucket, key)
        return True

    async def _delete_prefix(self, prefix: str) -> int:
        keys = [stored.key async for stored in self._list(prefix)]
        if not keys:
            return 0

        def delete_all() -> list:
            # The SDK sends DeleteObjects requests of up to 1000 keys as its result is consumed.
            return list(self._client.remove_objects(self._bucket, [DeleteObject(key) for key in keys]))

        with self._store_errors("delete objects under", prefix):
            failures = await asyncio.to_thread(delete_all)
        if failures:
            first = failures[0]
            raise ObjectStoreUnavailable(
                f"object store at {self._endpoint} could not delete {len(failures)} of {len(keys)} "
                f"objects under {prefix!r}; first: {first.name!r}: {first.code}: {first.message}"
            )
        return len(keys)

    async def _list(self, prefix: str) -> AsyncIterator[StoredObject]:
        await self._ensure_bucket()
        # Lazy: each page is requested as the iteration below reaches it.
        listing = self._client.list_objects(self._bucket, prefix=prefix or None, recursive=True)
        while True:
            with self._store_errors("list", prefix):
                batch = await asyncio.to_thread(lambda: list(itertools.islice(listing, _LIST_BATCH)))
            if not batch:
                return
            for info in batch:
                # Keys written by something other than Tailor could be invalid here: skip them,
                # as every other operation would refuse them.
                if info.object_name and is_valid_key(info.object_name):
                    yield StoredObject(info.object_name, info.size or 0, None, _timestamp(info.last_modified))

    async def _remove_abandoned_uploads(
        self, prefix: str, older_than_s: float, matching: Callable[[str], bool]
    ) -> int:
        await self._ensure_bucket()
        started_before = datetime.now(UTC) - timedelta(seconds=older_than_s)
        with self._store_errors("list the incomplete uploads under", prefix):
            uploads = await asyncio.to_thread(self._incomplete_uploads, prefix)
        removed = 0
        for upload in uploads:
            key = upload.object_name
            if not matching(key) or upload.initiated_time is None or upload.initiated_time > started_before:
                continue
            with self._store_errors("abort the incomplete upload of", key):
                aborted = await asyncio.to_thread(self._abort_upload, key, upload.upload_id or "")
            if aborted:
                log.info("object_store.abandoned_upload_aborted", key=key, started=str(upload.initiated_time))
                removed += 1
        return removed

    # minio 7.2 has no public call for incomplete uploads (list_incomplete_uploads went in
    # 7.0): these use the S3 operations it implements for put_object, ListMultipartUploads
    # and AbortMultipartUpload (minio/api.py: _list_multipart_uploads, _abort_multipart_upload).

    def _incomplete_uploads(self, prefix: str) -> list[Upload]:
        uploads: list[Upload] = []
        key_marker = upload_id_marker = None
        while True:
            page = self._client._list_multipart_uploads(  # noqa: SLF001
                self._bucket, prefix=prefix or None, key_marker=key_marker, upload_id_marker=upload_id_marker
            )
            uploads.extend(page.uploads)
            if not page.is_truncated or not page.uploads:
                return uploads
            # minio 7.2 drops NextUploadIdMarker (it sets a misspelt attribute): the last
            # upload listed is where the next page starts.
            key_marker = page.next_key_marker or page.uploads[-1].object_name
            upload_id_marker = page.uploads[-1].upload_id

    def _abort_upload(self, key: str, upload_id: str) -> bool:
        try:
            self._client._abort_multipart_upload(self._bucket, key, upload_id)  # noqa: SLF001
        except S3Error as exc:
            if exc.code == "NoSuchUpload":  # completed or aborted meanwhile
                return False
            raise
        return True

    async def check(self) -> None:
        await self._create_bucket_if_missing()
        self._bucket_ready = True

    async def close(self) -> None:
        self._uploads.shutdown(wait=False, cancel_futures=True)
        self._http.clear()

    async def _ensure_bucket(self) -> None:
        if self._bucket_ready:
            return
        async with self._bucket_lock:
            if not self._bucket_ready:
                await self._create_bucket_if_missing()
                self._bucket_ready = True

    async def _create_bucket_if_missing(self) -> None:
        with self._store_errors("find bucket", self._bucket):
            if await asyncio.to_thread(self._client.bucket_exists, self._bucket):
                return
        log.info("object_store.create_bucket", endpoint=self._endpoint, bucket=self._bucket)
        with self._store_errors("create bucket", self._bucket):
            await asyncio.to_thread(self._make_bucket)

    def _make_bucket(self) -> None:
        try:
            self._client.make_bucket(self._bucket, self._region)
        except S3Error as exc:
            # Another replica created it since we looked: that is what we wanted.
            if not exc.code.startswith("BucketAlready"):
                raise

    @contextlib.contextmanager
    def _store_errors(self, action: str, name: str) -> Iterator[None]:
        """Map the SDK's and urllib3's errors: a missing key is ObjectNotFound, the rest unavailability."""
        try:
            yield
        except S3Error as exc:
            if exc.code == "NoSuchKey":
                raise ObjectNotFound(f"object {name!r} does not exist") from exc
            raise ObjectStoreUnavailable(
                f"object store at {self._endpoint} failed to {action} {name!r}: {exc.code}: {exc.message}"
            ) from exc
        except (ServerError, InvalidResponseError, urllib3.exceptions.HTTPError, ConnectionError) as exc:
            raise ObjectStoreUnavailable(
                f"object store at {self._endpoint} unreachable or failing; could not {action} {name!r}: {exc}"
            ) from exc


def _timestamp(moment: datetime | None) -> float | None:
    return moment.timestamp() if moment else None
