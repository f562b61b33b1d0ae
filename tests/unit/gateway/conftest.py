"""The gateway under test: the real app on uvicorn (127.0.0.1), over fake services on real gRPC.

Tests drive it as users do, with the official ``openai`` SDK (async client, no retries
unless a test asks) and with httpx for raw checks of headers and SSE framing.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from services.common.settings import CommonSettings
from services.gateway.config import GatewaySettings
from tests.support.gateway_server import serving_gateway
from tests.unit.gateway.fakes import FakeServices, start_fake_services

KEY_A = "sk-test-org-a-0001"
KEY_B = "sk-test-org-b-0002"


@dataclass
class Gateway:
    """A running gateway and the fakes behind it."""

    url: str
    fakes: FakeServices
    settings: GatewaySettings

    def sdk(self, key: str = KEY_A, **options: Any) -> openai.AsyncOpenAI:
        options.setdefault("max_retries", 0)
        return openai.AsyncOpenAI(base_url=f"{self.url}/v1", api_key=key, **options)

    def http(self, key: str | None = KEY_A) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=10)


@contextlib.asynccontextmanager
async def running_gateway(tmp_path: Path, **overrides: Any) -> AsyncIterator[Gateway]:
    fakes = await start_fake_services(CommonSettings(data_dir=tmp_path, grpc_shutdown_grace_s=0.1))
    settings = GatewaySettings(
        **{
            "data_dir": tmp_path,
            "api_keys": f"{KEY_A}=org-a,{KEY_B}=org-b",
            "dataset_addr": fakes.address,
            "trainer_addr": fakes.address,
            "inference_addr": fakes.address,
            **overrides,
        }
    )
    try:
        async with serving_gateway(settings) as url:
            yield Gateway(url=url, fakes=fakes, settings=settings)
    finally:
        await fakes.server.stop()


GatewayFactory = Callable[..., contextlib.AbstractAsyncContextManager[Gateway]]


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    """A gateway with default settings (two organizations: KEY_A -> org-a, KEY_B -> org-b)."""
    async with running_gateway(tmp_path) as started:
        yield started


@pytest.fixture
def gateway_with(tmp_path: Path) -> GatewayFactory:
    """Starts a gateway with settings overridden, e.g. ``async with gateway_with(gateway_rate_limit_per_minute=2)``."""
    return lambda **overrides: running_gateway(tmp_path, **overrides)
