"""Validation of an upload as its bytes stream past, with the checking done in worker processes.

Checking JSON lines is pure-Python CPU work, and Python runs one thread's bytecode at a time:
in a thread, checks would take turns with receiving and storing the bytes (measured on a
2-core machine with the line-by-line reader: 175 MiB/s storing alone, 104 MiB/s checking
alone, 66 MiB/s both in one process; 94 MiB/s with two worker processes). The batch reader
(msgspec, :mod:`services.common.training_format.batches`) checks plain lines several times
faster, but still holding the GIL, so the split stands. So the event loop only
cuts the stream into blocks of whole lines (:class:`~.validation.LineSplitter`) and the
blocks are checked by :func:`~.validation.check_block` in a :class:`ValidationPool` of
worker processes, several at once, while the next chunks arrive and are stored. Blocks reach
the workers through shared memory (:mod:`.shared_blocks`). Verdicts are added up in line
order (:class:`~.validation.VerdictTally`, which numbers the lines), so the result is the
one :class:`~.validation.JsonlValidator` gives on the same bytes.

A block is checked against the file's format, which its first example sets. Until an
example has been seen, blocks are checked one at a time, in order (usually just the first);
after that, in parallel. Blocks in flight per upload are bounded, so memory stays flat.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import multiprocessing
import os
import signal
import sys
from collections import deque
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import structlog

from services.common.errors import Unavailable
from services.common.training_format import FormatAnchor
from services.dataset.shared_blocks import SharedBlocks, check_shared_block
from services.dataset.validation import (
    SOME_LATER_LINE,
    BlockVerdict,
    LineBlock,
    LineSplitter,
    LongLine,
    ValidationResult,
    VerdictTally,
    check_block,
)

log = structlog.get_logger("tailor.dataset.validation")

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


class ValidationPool:
    """Worker processes checking blocks of lines for all uploads; none: a thread per check.

    Workers are started on first use, with ``spawn``: forking a process that runs gRPC's
    threads is unsafe. A pool broken by a dead worker is replaced, and the uploads that were
    using it fail with UNAVAILABLE (nothing of them is kept; the client may retry).
    """

    def __init__(self, processes: int) -> None:
        self.processes = processes
        self._executor = self._new_executor()
        self._shared = self._new_shared_blocks()

    def _new_shared_blocks(self) -> SharedBlocks | None:
        if self.processes == 0:
            return None
        try:
            # Slots for one upload's blocks in flight, and one more; blocks of uploads beyond
            # that go through the pipe.
            return SharedBlocks(self.processes + 2)
        except OSError as error:
            log.warning("no shared memory for validation; blocks go through a pipe", error=str(error))
            return None

    def _new_executor(self) -> Executor | None:
        if self.processes == 0:
            return None  # asyncio's default thread pool
        return ProcessPoolExecutor(
            self.processes,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_die_with_parent,
            initargs=(os.getpid(),),
        )

    def check(
        self, block: LineBlock, anchor: FormatAnchor, *, max_problems: int, max_line_bytes: int
    ) -> asyncio.Future[BlockVerdict]:
        """Start checking ``block`` (not the file's first) in a worker; the future's result is its verdict."""
        limits = {"max_problems": max_problems, "max_line_bytes": max_line_bytes}
        limits["first_line"] = SOME_LATER_LINE
        shared = self._shared
        slot = shared.put(block) if shared is not None else None
        if slot is None:
            call = functools.partial(check_block, block.data(), anchor, **limits)
        else:
            call = functools.partial(
                check_shared_block, shared.name, shared.offset(slot), block.nbytes, anchor, **limits
            )
        try:
            future = asyncio.get_running_loop().run_in_executor(self._executor, call)
        except BrokenProcessPool as error:
            if slot is not None:
                shared.release(slot)
            raise self.replace_broken() from error
        if slot is not None:
            future.add_done_callback(lambda _: shared.release(slot))
        return future

    def replace_broken(self) -> Unavailable:
        """Swap a broken pool for a new one; the error to fail the affected upload with."""
        # Only the current pool, and only once: uploads that shared a broken pool all end up here.
        if isinstance(self._executor, ProcessPoolExecutor) and self._executor._broken:  # type: ignore[attr-defined]
            log.error("a validation worker died; starting a new pool")
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = self._new_executor()
            if self._shared is not None:
                self._shared.close()
            self._shared = self._new_shared_blocks()
        return Unavailable("a validation worker stopped unexpectedly; nothing was stored, retry the upload")

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        if self._shared is not None:
            self._shared.close()
            self._shared = None


class StreamValidation:
    """One upload's validation: ``await feed(chunk)`` for each chunk in order, then ``await finish()``."""

    def __init__(self, pool: ValidationPool, *, max_problems: int, max_line_bytes: int) -> None:
        self._pool = pool
        self._splitter = LineSplitter(max_line_bytes)
        self._tally = VerdictTally(max_problems=max_problems, max_line_bytes=max_line_bytes)
        self._pending: deque[asyncio.Future[BlockVerdict] | LongLine] = deque()
        # Enough blocks in flight to keep every worker busy, and no more (each holds a chunk).
        self._max_pending = pool.processes + 1

    async def feed(self, chunk: bytes) -> None:
        """Hand the lines ``chunk`` completes to the checks; waits only when too many are in flight."""
        for piece in self._splitter.feed(chunk):
            await self._dispatch(piece)

    async def finish(self) -> ValidationResult:
        """Wait for the last checks and return the file's verdict."""
        for piece in self._splitter.finish():
            await self._dispatch(piece)
        while self._pending:
            await self._settle_oldest()
        return self._tally.result()

    def abandon(self) -> None:
        """The upload failed: checks not yet started are cancelled, running ones left to end unobserved."""
        for pending in self._pending:
            if isinstance(pending, asyncio.Future):
                pending.cancel()
                pending.add_done_callback(_ignore_outcome)
        self._pending.clear()

    async def _dispatch(self, piece: LineBlock | LongLine) -> None:
        if isinstance(piece, LongLine):
            self._pending.append(piece)
            return
        limits = {"max_problems": self._tally.max_problems, "max_line_bytes": self._tally.max_line_bytes}
        anchor = self._tally.anchor
        if anchor is None:
            # Nothing is in flight without a known format, so this block is the next in line.
            while self._pending:
                await self._settle_oldest()
            first_line = self._tally.next_line
            data = piece.data()
            verdict = await asyncio.to_thread(check_block, data, None, first_line=first_line, **limits)
            self._tally.add(verdict)
            return
        self._pending.append(self._pool.check(piece, anchor, **limits))
        while len(self._pending) > self._max_pending:
            await self._settle_oldest()

    async def _settle_oldest(self) -> None:
        pending = self._pending.popleft()
        if isinstance(pending, LongLine):
            self._tally.add_long_line()
            return
        try:
            self._tally.add(await pending)
        except BrokenProcessPool as error:
            raise self._pool.replace_broken() from error


def _die_with_parent(parent_pid: int) -> None:
    """Runs first in each worker: the kernel kills it when the service dies, even by SIGKILL.

    Without this, workers of a killed service would live on (``make up``'s services and
    local runs are not in a container whose end takes every process with it).
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the service died before the request took effect
        os._exit(1)


def _ignore_outcome(future: asyncio.Future[BlockVerdict]) -> None:
    if not future.cancelled():
        future.exception()
