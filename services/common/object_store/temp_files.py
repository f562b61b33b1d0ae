"""Local files written atomically: what the filesystem backend and ``get_file`` write through.

A temporary file in the target's own directory (so the final ``os.replace`` is a rename
within one filesystem), synced, then renamed over the target: readers see a complete file
or none. The writer holds an exclusive ``flock`` on its temporary file until it is
committed or discarded; the kernel releases it when the process dies, which is how
:func:`remove_abandoned_temp_files` tells a dead writer's file from a live one's.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import IO

import structlog

log = structlog.get_logger(__name__)

# Temporary files carry this character, which no object key may contain, so a half-written
# file can never be mistaken for an object (the filesystem backend's listing skips them).
TEMP_MARKER = "~"
TEMP_PREFIX = f".{TEMP_MARKER}"


def open_temp_file(target: Path) -> IO[bytes]:
    """Create a new, empty, locked temporary file beside ``target``, creating its directory if needed."""
    attempts_left = 3
    while True:
        target.parent.mkdir(parents=True, exist_ok=True)
        # Not derived from the target's name, which may already be as long as a name can be.
        temp_path = target.parent / f"{TEMP_PREFIX}{secrets.token_hex(8)}"
        try:
            temp_file = open(temp_path, "xb")
        except FileNotFoundError:
            # A concurrent delete pruned the directory between mkdir and open: make it again.
            attempts_left -= 1
            if not attempts_left:
                raise
            continue
        try:
            fcntl.flock(temp_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            # A filesystem without flock (some network ones): the sweep cannot lock there
            # either, so it takes every temporary file for a live one and removes none.
            pass
        except BaseException:
            discard_temp_file(temp_file)
            raise
        return temp_file


def commit_temp_file(temp_file: IO[bytes], target: Path) -> None:
    """Make ``temp_file`` durable and atomically put it in place as ``target``."""
    temp_file.flush()
    os.fsync(temp_file.fileno())
    # Renamed while still open, so its lock is held until it is no longer a temporary file.
    os.replace(temp_file.name, target)
    temp_file.close()
    # The rename itself is durable only once the directory entry is synced.
    directory = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def discard_temp_file(temp_file: IO[bytes]) -> None:
    """Close and remove an uncommitted temporary file; never raises.

    Synchronous on purpose: it runs on failure and cancellation paths, where awaiting
    could be interrupted again, and closing plus unlinking one file is quick. It must not
    raise either, or it would hide the failure being handled: a file it cannot remove (a
    directory turned read-only) is logged, and swept at the next start-up.
    """
    with contextlib.suppress(OSError):
        temp_file.close()
    try:
        os.unlink(temp_file.name)
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("object_store.temp_file_left", path=str(temp_file.name), error=str(exc))


def remove_abandoned_temp_files(directory: Path, matching: Callable[[Path], bool]) -> int:
    """Remove the temporary files under ``directory`` that no live writer holds; how many.

    ``matching`` gets each temporary file's directory. A file is removed only while this
    process holds its lock, so a writer can never lose a file it still writes (one that
    was just renamed into place is simply no longer there to remove).
    """
    removed = 0
    for root, _, names in os.walk(directory):
        if not matching(Path(root)):
            continue
        for name in names:
            if name.startswith(TEMP_PREFIX) and _remove_if_unlocked(Path(root) / name):
                removed += 1
    return removed


def _remove_if_unlocked(path: Path) -> bool:
    try:
        candidate = open(path, "rb")
    except OSError:
        return False  # gone meanwhile (committed or discarded), or unreadable
    with candidate:
        try:
            fcntl.flock(candidate.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False  # a live writer holds it
        try:
            os.unlink(path)
        except FileNotFoundError:
            return False
        except OSError as exc:
            log.warning("object_store.temp_file_left", path=str(path), error=str(exc))
            return False
    return True
