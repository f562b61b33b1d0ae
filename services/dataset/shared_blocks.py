"""Blocks of an upload handed to validation workers through shared memory, not through a pipe.

Sent through :class:`~concurrent.futures.ProcessPoolExecutor`'s pipe, a block is pickled,
written 64 KiB at a time by the service, read back and unpickled by a worker: measured on a
2-core machine, ~0.06 cpu-s per 64 MiB in the workers alone, a third of the checking itself.
Here the service copies a block once into a slot of a shared memory segment, and a worker
reads it from there, so only the slot's place crosses the pipe.

The segment belongs to a :class:`~.parallel_validation.ValidationPool` and lives as long as it:
unlinked when the pool is closed or replaced, and, when the service dies without closing it
(even by SIGKILL), by multiprocessing's resource tracker, a process of its own which the
service starts and which unlinks what the service left registered once the service and its
workers are gone. A block is in a slot from its dispatch until its check is done or given up
(a worker still reading a slot given up can only spoil a verdict no one waits for).
"""

from __future__ import annotations

import os
from multiprocessing import shared_memory

from services.common.training_format import FormatAnchor
from services.dataset.validation import BlockVerdict, LineBlock, check_block

# A slot holds one upload chunk (the gateway sends 1 MiB) plus the start of its first line held
# from the chunk before; a larger block goes through the pipe, as before.
SLOT_BYTES = 2 * 1024 * 1024


class SharedBlocks:
    """A segment of ``slots`` slots of :data:`SLOT_BYTES`; :meth:`put` a block in a free one."""

    def __init__(self, slots: int) -> None:
        self._segment = shared_memory.SharedMemory(create=True, size=slots * SLOT_BYTES)
        try:
            # Linux's tmpfs allocates pages on first write, and a write past /dev/shm's size kills
            # the process (SIGBUS): reserve them all now, where running out is an ordinary error.
            if hasattr(os, "posix_fallocate"):  # not on macOS
                os.posix_fallocate(self._segment._fd, 0, self._segment.size)  # type: ignore[attr-defined]
        except OSError:
            self.close()
            raise
        self.name = self._segment.name
        self._free = list(range(slots))

    def put(self, block: LineBlock) -> int | None:
        """The slot ``block`` was copied into (at :meth:`offset`); None: too large, or no slot free."""
        size = block.nbytes
        if size > SLOT_BYTES or not self._free:
            return None
        slot = self._free.pop()
        buffer, offset = self._segment.buf, slot * SLOT_BYTES
        for part in block.parts:
            buffer[offset : offset + len(part)] = part
            offset += len(part)
        return slot

    @staticmethod
    def offset(slot: int) -> int:
        return slot * SLOT_BYTES

    def release(self, slot: int) -> None:
        self._free.append(slot)

    def close(self) -> None:
        """Unlink the segment (workers still mapping it keep their view until they end)."""
        self._segment.close()
        try:
            self._segment.unlink()
        except FileNotFoundError:
            pass


_attached: dict[str, shared_memory.SharedMemory] = {}


def check_shared_block(
    segment: str,
    offset: int,
    size: int,
    anchor: FormatAnchor,
    *,
    first_line: int,
    max_problems: int,
    max_line_bytes: int,
) -> BlockVerdict:
    """Runs in a worker: :func:`~.validation.check_block` of ``size`` bytes at ``offset`` in ``segment``."""
    shared = _attached.get(segment)
    if shared is None:
        # Attaching registers the name with the service's resource tracker too (the workers share
        # it); the tracker keeps a set of names, and the service's unlink takes the name out.
        shared = _attached[segment] = shared_memory.SharedMemory(segment)
    block = bytes(shared.buf[offset : offset + size])
    return check_block(
        block, anchor, first_line=first_line, max_problems=max_problems, max_line_bytes=max_line_bytes
    )
