"""The data directory is private to the user that runs Tailor: 0700, and what Tailor writes 0600.

It holds customers' training files and adapters (the filesystem object store), the
SQLite records, built models, adapter caches and the local API key file. Every Tailor
process (the four services, ``make up``'s launcher, the training worker) reads its
settings through :func:`services.common.settings.load_settings`, which calls
:func:`make_data_dir_private` first thing: it sets the process's umask to 0o077, so
every file and directory the process creates afterwards (object-store temp files,
SQLite databases and their journals, adapter downloads, worker scratch, built models)
is created 0600 / 0700 without a chmod at each place; child processes inherit it.

A data directory left by an older version, with looser permissions, is tightened once
at start-up: the directory to 0700 and group/other bits removed from everything under
it, logged with how many entries changed. A directory this user does not own (a
Kubernetes emptyDir is root's, group-owned by the pod's fsGroup) is left as it is: the
pod is its only reader.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

import structlog

log = structlog.get_logger("tailor.data_dir")

PRIVATE_UMASK = 0o077
_GROUP_OTHER = 0o077


def make_data_dir_private(data_dir: Path) -> None:
    """Sets the umask to 0o077, creates ``data_dir`` (0700) and tightens a looser existing one."""
    os.umask(PRIVATE_UMASK)
    data_dir.mkdir(parents=True, exist_ok=True)
    tighten_data_dir(data_dir)


def tighten_data_dir(data_dir: Path) -> int:
    """Removes group/other permissions from ``data_dir`` and, when it had any, from everything under it.

    Returns how many entries changed. A directory that is already 0700 (the usual case)
    costs one stat: its contents were written under the private umask.
    """
    try:
        info = data_dir.stat()
    except FileNotFoundError:
        return 0
    if info.st_uid != os.getuid():
        log.debug("data directory owned by another user; permissions left as they are", path=str(data_dir))
        return 0
    if not stat.S_IMODE(info.st_mode) & _GROUP_OTHER:
        return 0
    changed = _remove_group_other(data_dir, info.st_mode)
    for root, directories, files in os.walk(data_dir, followlinks=False):
        for name in (*directories, *files):
            path = Path(root, name)
            try:
                mode = path.lstat().st_mode
            except FileNotFoundError:  # another process of the stack removed it meanwhile
                continue
            if stat.S_ISLNK(mode):
                continue
            changed += _remove_group_other(path, mode)
    log.warning(
        "data directory was readable by other users; tightened to owner-only",
        path=str(data_dir),
        entries_changed=changed,
    )
    return changed


def _remove_group_other(path: Path, mode: int) -> int:
    if not stat.S_IMODE(mode) & _GROUP_OTHER:
        return 0
    with contextlib.suppress(FileNotFoundError, PermissionError):
        path.chmod(stat.S_IMODE(mode) & ~_GROUP_OTHER)
        return 1
    return 0


def current_umask() -> int:
    """This process's umask, read without changing it (Linux ``/proc``; else set and restored)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(PRIVATE_UMASK)
    os.umask(mask)
    return mask
