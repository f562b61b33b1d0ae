"""The dataset service as deployed (``python -m services.dataset``): its validation workers, and their
shared memory, never outlive it."""

from __future__ import annotations

import time
from pathlib import Path

import psutil

from tests.integration.dataset.large_upload import DatasetProcess, chat_examples_block, jsonl_chunks, upload


async def test_validation_workers_and_their_shared_memory_go_with_a_killed_service(tmp_path: Path) -> None:
    service = DatasetProcess({"TAILOR_DATA_DIR": str(tmp_path)})
    try:
        await service.wait_until_serving()
        block, _ = chat_examples_block(1 << 20)
        # Several chunks, so that blocks after the first are checked by the worker processes.
        record = await upload(service.address, jsonl_chunks(block, 4, chunk_bytes=256 << 10), "train.jsonl")
        assert record.statistics.examples > 0
        helpers = psutil.Process(service.process.pid).children()
        assert helpers, "the upload should have started validation workers"
        segments = {
            Path(m.path)
            for m in psutil.Process(service.process.pid).memory_maps()
            if m.path.startswith("/dev/shm/psm_")
        }
        assert segments, "the blocks should have reached the workers through shared memory"
    finally:
        service.process.kill()
        service.process.wait()
    deadline = time.monotonic() + 10
    while any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in helpers):
        assert time.monotonic() < deadline, "validation workers outlived the service"
        time.sleep(0.1)
    while any(segment.exists() for segment in segments):
        assert time.monotonic() < deadline, "the shared memory of validation outlived the service"
        time.sleep(0.1)
