"""Oversize bodies cost the gateway no memory: 8 concurrent 50 MB chat bodies, key right or wrong.

The gateway runs as it is deployed, ``python -m services.gateway`` (uvicorn) in its own
process on 127.0.0.1, with no upstream reachable: every answer here is the gateway's own.
Before the guard (services/gateway/request_guard.py) FastAPI read each body whole before
the key was checked: these requests took the gateway from 81 MiB to 1,495 MiB (564 MiB with
a wrong key), and a right key's body went on to inference.

Each case sends its 8 bodies at once, once with ``Content-Length`` and once chunked, and
samples the gateway's RSS while they are answered. What the gateway may hold is bounded:
nothing of a body with a wrong key or an announced size over the limit, and at most the
limit (2 MiB) per chunked request before its 413, so 16 MiB for 8, plus the transport's
read buffers and the allocator's slack. The bound, 40 MiB, is above that and a tenth of
what reading one round of bodies whole would take (8 x 50 MB = 381 MiB).
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

from services.common.settings import MiB
from tests.support.processes import OutputWatchedProcess, free_port

KEY = "sk-memory-test-key-0001"
BODY_BYTES = 50 * 1000 * 1000
CONCURRENT = 8
GROWTH_BOUND = 40 * MiB
# One shared body: the test process sends the same bytes on every connection.
BODY = b'{"model": "tailor-tiny", "messages": [{"role": "user", "content": "' + b"a" * BODY_BYTES + b'"}]}'


@dataclass
class RunningGateway:
    url: str
    process: OutputWatchedProcess

    def rss(self) -> int:
        return psutil.Process(self.process.process.pid).memory_info().rss


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[RunningGateway]:
    port = free_port()
    environment = {name: value for name, value in os.environ.items() if not name.startswith("TAILOR_")}
    environment.update(
        {name: value for name, value in os.environ.items() if name.startswith("TAILOR_INTERNAL_AUTH_")},
        TAILOR_DATA_DIR=str(tmp_path),
        TAILOR_API_KEYS=f"{KEY}=org-memory",
        TAILOR_GATEWAY_PORT=str(port),
        # nothing listens there: the gateway starts and answers alone
        TAILOR_DATASET_ADDR=f"127.0.0.1:{free_port()}",
        TAILOR_TRAINER_ADDR=f"127.0.0.1:{free_port()}",
        TAILOR_INFERENCE_ADDR=f"127.0.0.1:{free_port()}",
        TAILOR_LOG_LEVEL="warning",
        PYTHONUNBUFFERED="1",
    )
    process = OutputWatchedProcess([sys.executable, "-m", "services.gateway"], environment)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.process.poll() is None, process.drain()
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, process.drain()
            time.sleep(0.2)
        yield RunningGateway(url, process)
    finally:
        process.stop(timeout=10)


async def in_pieces(body: bytes) -> AsyncIterator[bytes]:
    """``body`` without a known length, so httpx sends it chunked."""
    view = memoryview(body)
    for start in range(0, len(view), MiB):
        yield bytes(view[start : start + MiB])


class PeakRss:
    """The largest RSS of the gateway seen while the block runs, sampled every 10 ms."""

    def __init__(self, gateway: RunningGateway) -> None:
        self._gateway = gateway
        self._done = threading.Event()
        self.peak = gateway.rss()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._done.wait(0.01):
            self.peak = max(self.peak, self._gateway.rss())

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()
        self.peak = max(self.peak, self._gateway.rss())


async def send_round(url: str, key: str, *, chunked: bool, body: bytes, count: int) -> list[int]:
    """``count`` chat requests at once with ``body``; their statuses."""
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    limits = httpx.Limits(max_connections=count)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120, limits=limits) as http:

        async def one() -> int:
            content = in_pieces(body) if chunked else body
            return (await http.post("/v1/chat/completions", content=content)).status_code

        return list(await asyncio.gather(*(one() for _ in range(count))))


CASES = [
    pytest.param(KEY, False, 413, id="right-key-content-length"),
    pytest.param(KEY, True, 413, id="right-key-chunked"),
    pytest.param("sk-wrong-key-0000", False, 401, id="wrong-key-content-length"),
    pytest.param("sk-wrong-key-0000", True, 401, id="wrong-key-chunked"),
]


@pytest.mark.slow
def test_concurrent_oversize_bodies_leave_the_gateways_memory_flat(gateway: RunningGateway) -> None:
    # Warm up every path once with a small oversize body (first requests import and build things).
    warm_up = BODY[: 3 * MiB]
    for key, chunked, _ in (case.values for case in CASES):
        asyncio.run(send_round(gateway.url, str(key), chunked=bool(chunked), body=warm_up, count=1))
    baseline = gateway.rss()
    figures: list[str] = [f"after warm-up {baseline / MiB:.1f} MiB"]
    for case in CASES:
        key, chunked, expected = case.values
        before = gateway.rss()
        with PeakRss(gateway) as sampled:
            statuses = asyncio.run(
                send_round(gateway.url, str(key), chunked=bool(chunked), body=BODY, count=CONCURRENT)
            )
        after = gateway.rss()
        figures.append(
            f"{case.id}: before {before / MiB:.1f} MiB, peak {sampled.peak / MiB:.1f} MiB, "
            f"after {after / MiB:.1f} MiB, statuses {statuses}"
        )
        assert statuses == [expected] * CONCURRENT, figures
        assert sampled.peak - before < GROWTH_BOUND, figures
    assert gateway.rss() - baseline < GROWTH_BOUND, figures  # nothing kept from one round to the next
    print("\n".join(["gateway RSS:", *figures]))
