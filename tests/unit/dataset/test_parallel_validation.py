"""Validation spread over worker processes gives exactly the verdict of the plain validator."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import psutil
import pytest

from services.common.errors import Unavailable
from services.dataset import parallel_validation
from services.dataset.parallel_validation import StreamValidation, ValidationPool
from services.dataset.validation import JsonlValidator, ValidationResult

CHAT = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]}


def sample_file() -> bytes:
    """Garbage before the first example, then examples with problems scattered across many blocks."""
    lines = ["not json", "[1]"]
    for index in range(400):
        if index % 97 == 5:
            lines.append('{"prompt": "a", "completion": "b"}')  # another format than the file's
        elif index % 89 == 7:
            lines.append('{"messages": [}')
        elif index % 131 == 9:
            lines.append(
                json.dumps({"messages": [{"role": "user", "content": "x" * 3000}, CHAT["messages"][1]]})
            )
        else:
            lines.append(json.dumps(CHAT))
    return ("\n".join(lines) + "\n").encode()


def chunks(data: bytes, size: int) -> list[bytes]:
    return [data[start : start + size] for start in range(0, len(data), size)]


def plain_verdict(data: bytes, **limits: int) -> ValidationResult:
    validator = JsonlValidator(**limits)
    for chunk in chunks(data, 1000):
        validator.feed(chunk)
    return validator.finish()


@pytest.mark.parametrize("processes", [0, 2])
async def test_parallel_checks_give_the_plain_validators_verdict(processes: int) -> None:
    data = sample_file()
    limits = {"max_problems": 8, "max_line_bytes": 2048}
    pool = ValidationPool(processes)
    try:
        validation = StreamValidation(pool, **limits)
        for chunk in chunks(data, 777):
            await validation.feed(chunk)
        result = await validation.finish()
    finally:
        pool.close()
    expected = plain_verdict(data, **limits)
    assert result == expected
    assert expected.problem_count > len(expected.problems) == 8
    assert {p.code for p in expected.problems} == {
        "invalid_json",
        "not_an_object",
        "mixed_formats",
        "line_too_long",
    }


async def validate(pool: ValidationPool, data: bytes, chunk_bytes: int, **limits: int) -> ValidationResult:
    validation = StreamValidation(pool, **limits)
    for chunk in chunks(data, chunk_bytes):
        await validation.feed(chunk)
    return await validation.finish()


async def test_blocks_too_large_for_shared_memory_and_uploads_beyond_its_slots_get_the_same_verdict() -> None:
    # 3 MiB chunks make blocks larger than a slot; five uploads at once want more slots than
    # the pool has. Both go through the pipe instead, and nothing changes in the verdicts.
    small = sample_file()
    large = small * (3 * 1024 * 1024 // len(small) + 2)
    limits = {"max_problems": 5, "max_line_bytes": 2048}
    pool = ValidationPool(2)
    try:
        results = await asyncio.gather(
            validate(pool, large, 3 * 1024 * 1024, **limits),
            *(validate(pool, small, 500, **limits) for _ in range(4)),
        )
    finally:
        pool.close()
    assert results[0] == plain_verdict(large, **limits)
    assert results[0].problem_count > 5 * (len(large) // len(small))
    assert results[1:] == [plain_verdict(small, **limits)] * 4


async def test_closing_the_pool_removes_its_shared_memory() -> None:
    others = shared_memory_of(os.getpid())  # of other pools alive in this process, if any
    pool = ValidationPool(2)
    try:
        assert (await validate(pool, sample_file(), 777, max_problems=3, max_line_bytes=4096)).lines == 402
        segments = shared_memory_of(os.getpid()) - others
        assert len(segments) == 1, segments
    finally:
        pool.close()
    assert not any(segment.exists() for segment in segments)
    assert shared_memory_of(os.getpid()) == others


def shared_memory_of(pid: int) -> set[Path]:
    """The POSIX shared memory segments process ``pid`` maps."""
    return {Path(m.path) for m in psutil.Process(pid).memory_maps() if m.path.startswith("/dev/shm/psm_")}


async def test_without_shared_memory_blocks_go_through_the_pipe(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_shared_memory(slots: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(parallel_validation, "SharedBlocks", no_shared_memory)
    limits = {"max_problems": 8, "max_line_bytes": 2048}
    others = shared_memory_of(os.getpid())
    pool = ValidationPool(2)
    try:
        result = await validate(pool, sample_file(), 777, **limits)
        assert shared_memory_of(os.getpid()) == others
    finally:
        pool.close()
    assert result == plain_verdict(sample_file(), **limits)


async def test_a_dead_worker_fails_the_upload_with_unavailable_and_the_pool_is_replaced() -> None:
    limits = {"max_problems": 8, "max_line_bytes": 2048}
    expected = plain_verdict(sample_file(), **limits)
    others = shared_memory_of(os.getpid())
    earlier_children = set(psutil.Process().children())  # workers of closed pools may still be ending
    pool = ValidationPool(2)
    try:
        assert await validate(pool, sample_file(), 777, **limits) == expected
        old_segments = shared_memory_of(os.getpid()) - others
        workers = [
            child
            for child in set(psutil.Process().children()) - earlier_children
            if any("spawn_main" in part for part in child.cmdline())
        ]
        assert len(workers) == 2, workers
        workers[0].kill()
        # Not psutil's wait(): it would reap the child, and multiprocessing, finding no child to
        # reap, would take the dead worker for alive forever (its pool's thread then spins at exit).
        deadline = time.monotonic() + 10
        while not _ended(workers[0]) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        deadline = time.monotonic() + 10
        with pytest.raises(Unavailable, match="validation worker stopped unexpectedly"):
            # The pool learns of the death from its own thread: an upload or two may pass first.
            while time.monotonic() < deadline:
                await validate(pool, sample_file(), 777, **limits)
        assert await validate(pool, sample_file(), 777, **limits) == expected
        new_segments = shared_memory_of(os.getpid()) - others
        assert len(new_segments) == 1 and new_segments != old_segments
        assert not any(segment.exists() for segment in old_segments)
    finally:
        pool.close()


def _ended(process: psutil.Process) -> bool:
    """Dead: a zombie its parent has yet to reap, or reaped already."""
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
