"""The filesystem backend: objects as files under one directory, the embedded default.

Used when no S3 endpoint is configured (a laptop, ``make up``, most tests). The key
``orgs/o1/files/file-1`` is the file ``<root>/orgs/o1/files/file-1``. Writes go to a
temporary file in the target's directory, are fsynced and then renamed into place, so
readers see a complete object or none. A failed or cancelled write removes its temporary
file; one whose process was killed is removed by :meth:`remove_abandoned_uploads` (the
writer's lock on it is gone). Blocking file calls run in worker threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator
from typing import IO
from pathlib import Path

from services.common.errors import InvalidArgument
from services.common.object_store.base import (
    ObjectNotFound,
    ObjectStore,
    ObjectStoreUnavailable,
    StoredObject,
    is_valid_key,
)
from services.common.object_store.temp_files import (
    commit_temp_file,
    discard_temp_file,
    open_temp_file,
    remove_abandoned_temp_files,
)


class FilesystemObjectStore(ObjectStore):
    """Objects stored as files under ``root``; the directory is created if missing.

    Unlike S3, a directory cannot also be a file: storing both ``a`` and ``a/b`` is
    refused with InvalidArgument. Tailor's key layouts never need both.
    """

    def __init__(self, root: str | Path) -> None:
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        # Resolved once, so that the containment check below compares real paths.
        self._root = root.resolve()

    @property
    def root(self) -> Path:
        return self._root

    def _path(self, key: str) -> Path:
        # Valid keys cannot climb out of the root by themselves, but a symlink under the
        # root could still point elsewhere: follow it and refuse what lands outside.
        path = (self._root / key).resolve()
        if not path.is_relative_to(self._root) or path == self._root:
            raise InvalidArgument(f"object key {key!r} resolves outside the object store", param="key")
        return path

    async def _put(self, key: str, chunks: AsyncIterable[bytes], content_type: str) -> float | None:
        # content_type is not kept: files have no metadata, and nothing reads it back.
        target = self._path(key)
        with _writing(key):
            temp_file = await _open_temp_file(target)
        try:
            async for chunk in chunks:
                with _writing(key):
                    await asyncio.to_thread(temp_file.write, chunk)
            with _writing(key):
                await self._complete_or_remove(key, asyncio.to_thread(commit_temp_file, temp_file, target))
        except BaseException:
            discard_temp_file(temp_file)  # already renamed away if the commit got that far
            raise
        return target.stat().st_mtime

    async def _get(self, key: str, offset: int, length: int | None, chunk_size: int) -> AsyncIterator[bytes]:
        path = self._path(key)
        with _reading(key):
            source = await asyncio.to_thread(open, path, "rb")
        try:
            with _reading(key):
                await asyncio.to_thread(source.seek, offset)
            remaining = length
            while remaining is None or remaining > 0:
                size = chunk_size if remaining is None else min(chunk_size, remaining)
                with _reading(key):
                    chunk = await asyncio.to_thread(source.read, size)
                if not chunk:
                    break
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk
        finally:
            source.close()

    async def _stat(self, key: str) -> StoredObject:
        path = self._path(key)
        with _reading(key):
            status = await asyncio.to_thread(path.stat)
        if not stat.S_ISREG(status.st_mode):
            raise ObjectNotFound(f"object {key!r} does not exist")
        return StoredObject(key, status.st_size, None, status.st_mtime)

    async def _delete(self, key: str) -> bool:
        path = self._path(key)
        try:
            await asyncio.to_thread(path.unlink)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return False
        except OSError as exc:
            raise ObjectStoreUnavailable(f"object store could not delete {key!r}: {exc}") from exc
        await asyncio.to_thread(self._prune_empty_directories, path.parent)
        return True

    def _prune_empty_directories(self, directory: Path) -> None:
        # Left behind, empty directories would pile up and block keys of the same name.
        while directory != self._root and directory.is_relative_to(self._root):
            try:
                directory.rmdir()
            except OSError:  # not empty (or already gone): stop climbing
                return
            directory = directory.parent

    async def _list(self, prefix: str) -> AsyncIterator[StoredObject]:
        for stored in await asyncio.to_thread(self._scan, prefix):
            yield stored

    def _scan(self, prefix: str) -> list[StoredObject]:
        """Every object under ``prefix``, sorted by key (a directory walk is not)."""
        # Only the directory named by the prefix's complete segments can hold matches.
        start = self._root.joinpath(*prefix.split("/")[:-1])
        found: list[StoredObject] = []
        pending = [start]
        while pending:
            try:
                entries = list(os.scandir(pending.pop()))
            except (FileNotFoundError, NotADirectoryError):
                continue
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    pending.append(Path(entry.path))
                    continue
                key = Path(entry.path).relative_to(self._root).as_posix()
                # Temporary files have names no key can have, so this skips them too.
                if not key.startswith(prefix) or not is_valid_key(key):
                    continue
                try:
                    status = entry.stat()
                except FileNotFoundError:  # deleted while we looked
                    continue
                found.append(StoredObject(key, status.st_size, None, status.st_mtime))
        found.sort(key=lambda stored: stored.key)
        return found

    async def _remove_abandoned_uploads(
        self, prefix: str, older_than_s: float, matching: Callable[[str], bool]
    ) -> int:
        # older_than_s is not needed here: a live writer's lock tells its file apart.
        start = self._root.joinpath(*prefix.split("/")[:-1])

        def in_scope(directory: Path) -> bool:
            # A temporary file does not name its key, only its directory: a key in that
            # directory stands for it. (Sweeping too much would be harmless here anyway.)
            relative = directory.relative_to(self._root).as_posix()
            probe = "x" if relative == "." else f"{relative}/x"
            return (probe.startswith(prefix) or prefix.startswith(probe[:-1])) and matching(probe)

        return await asyncio.to_thread(remove_abandoned_temp_files, start, in_scope)

    async def check(self) -> None:
        usable = await asyncio.to_thread(
            lambda: self._root.is_dir() and os.access(self._root, os.W_OK | os.X_OK)
        )
        if not usable:
            raise ObjectStoreUnavailable(f"object store directory {str(self._root)!r} is missing or not writable")

    async def close(self) -> None:
        """Nothing to release: every file is closed when its operation ends."""


@contextlib.contextmanager
def _reading(key: str) -> Iterator[None]:
    """Map OS errors while reading: a missing path is a missing object, the rest a store failure."""
    try:
        yield
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
        raise ObjectNotFound(f"object {key!r} does not exist") from exc
    except OSError as exc:
        raise ObjectStoreUnavailable(f"object store could not read {key!r}: {exc}") from exc


@contextlib.contextmanager
def _writing(key: str) -> Iterator[None]:
    """Map OS errors while writing: a clash between a file and a directory, or a store failure."""
    try:
        yield
    except (FileExistsError, NotADirectoryError, IsADirectoryError) as exc:
        raise InvalidArgument(
            f"object key {key!r} clashes with an existing object or key prefix "
            "(the filesystem object store cannot hold both 'a' and 'a/b')",
            param="key",
        ) from exc
    except OSError as exc:
        raise ObjectStoreUnavailable(f"object store could not write {key!r}: {exc}") from exc


async def _open_temp_file(target: Path) -> IO[bytes]:
    """``open_temp_file`` in a worker thread; a cancellation meanwhile still removes the file it made."""
    opening = asyncio.ensure_future(asyncio.to_thread(open_temp_file, target))

    def discard_if_opened(done: asyncio.Future[IO[bytes]]) -> None:
        if not done.cancelled() and done.exception() is None:
            discard_temp_file(done.result())

    try:
        return await asyncio.shield(opening)
    except asyncio.CancelledError:
        opening.add_done_callback(discard_if_opened)
        raise
