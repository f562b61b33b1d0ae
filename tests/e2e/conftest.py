"""The real platform on loopback, started once per session, driven only through the gateway.

``python -m services.local_stack`` runs as a subprocess on free ports with a fresh data
directory and two organizations' keys, exactly as ``make up`` does. A second gateway
process with a rate limit of a few requests per minute serves the rate-limit test, so the
main one keeps the default limit. Everything listens on 127.0.0.1.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest

from tests.support.local_stack import running_stack
from tests.support.processes import OutputWatchedProcess, free_port

KEY_A = "sk-e2e-org-a-0001"
KEY_B = "sk-e2e-org-b-0002"
RATE_LIMITED_PER_MINUTE = 3


@dataclass
class Stack:
    """The running platform: the gateway's URL and a second, rate-limited gateway's."""

    url: str
    rate_limited_url: str

    def client(self, key: str = KEY_A, **options: object) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=key, **options)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    data_dir: Path = tmp_path_factory.mktemp("e2e") / "data"
    with running_stack(data_dir, TAILOR_API_KEYS=f"{KEY_A}=org-a,{KEY_B}=org-b") as platform:
        limited_port = free_port()
        limited = OutputWatchedProcess(
            [sys.executable, "-m", "services.gateway"],
            {
                **platform.service_environment("gateway"),
                "TAILOR_GATEWAY_PORT": str(limited_port),
                "TAILOR_GATEWAY_RATE_LIMIT_PER_MINUTE": str(RATE_LIMITED_PER_MINUTE),
            },
        )
        try:
            limited_url = f"http://127.0.0.1:{limited_port}"
            _wait_healthy(limited_url)
            yield Stack(url=platform.url, rate_limited_url=limited_url)
        finally:
            limited.stop()


def _wait_healthy(url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} never became ready")
