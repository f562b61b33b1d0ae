"""Builds the gateway's FastAPI application.

The OpenAI routes (files, fine-tuning jobs, models, chat completions) land with the
gateway issue; until then the app serves health, readiness and metrics.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from prometheus_client import make_asgi_app

from services.common.grpc_client import open_channel
from services.gateway import health
from services.gateway.config import GatewaySettings


def create_app(settings: GatewaySettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.upstream_channels = {
            "dataset": open_channel(settings.dataset_addr, settings),
            "trainer": open_channel(settings.trainer_addr, settings),
            "inference": open_channel(settings.inference_addr, settings),
        }
        yield
        for channel in app.state.upstream_channels.values():
            await channel.close()

    app = FastAPI(title="Tailor", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.include_router(health.router)
    app.mount("/metrics", make_asgi_app())
    return app
