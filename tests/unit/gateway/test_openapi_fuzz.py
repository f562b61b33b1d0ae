"""A property test over /openapi.json: whatever a client sends to a documented route, no 5xx.

Requests come from :mod:`tests.unit.gateway.openapi_requests`; the gateway runs over the
fake services on 127.0.0.1, in a thread with its own event loop so that Hypothesis can
drive it synchronously.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.gateway.conftest import KEY_A, running_gateway
from tests.unit.gateway.openapi_requests import draw_request, send_and_check


class Served:
    """The gateway and fakes served by an event loop in a background thread, and its OpenAPI document."""

    def __init__(self, tmp_path: Path) -> None:
        self.url = ""
        self.document: dict[str, Any] = {}
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(tmp_path),), daemon=True)

    def __repr__(self) -> str:  # short: Hypothesis prints the fixtures of a failing example
        return f"Served({self.url})"

    async def _serve(self, tmp_path: Path) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with running_gateway(tmp_path) as gateway:
            self.url = gateway.url
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> Served:
        self._thread.start()
        assert self._ready.wait(timeout=30), "the gateway did not start"
        self.document = httpx.get(f"{self.url}/openapi.json").json()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=30)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with Served(tmp_path_factory.mktemp("fuzz")) as running:
        yield running


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_no_request_to_a_documented_route_gets_a_5xx(served: Served, data: st.DataObject) -> None:
    send_and_check(served.url, draw_request(data, served.document, KEY_A))
