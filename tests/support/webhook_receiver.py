"""A real HTTP webhook receiver on loopback: records every request and answers as a test scripts it.

``answers`` is a list consumed one per request: an HTTP status, or ``"hang"`` (no answer for
longer than the sender waits). Once it is empty every request gets 200.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from aiohttp import web

HANG = "hang"


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    answered: int | str


@dataclass
class WebhookReceiver:
    url: str = ""
    answers: list[int | str] = field(default_factory=list)
    requests: list[Received] = field(default_factory=list)

    def accepted(self, path: str | None = None) -> list[Received]:
        """The requests answered 200, optionally only those to ``path``."""
        return [r for r in self.requests if r.answered == 200 and (path is None or r.path == path)]

    async def _handle(self, request: web.Request) -> web.Response:
        answer: int | str = self.answers.pop(0) if self.answers else 200
        self.requests.append(Received(request.path, dict(request.headers), await request.read(), answer))
        if answer == HANG:
            await asyncio.sleep(3600)
        return web.Response(status=int(answer), text="ok" if answer == 200 else "no")


@contextlib.asynccontextmanager
async def webhook_receiver() -> AsyncIterator[WebhookReceiver]:
    """Serves a :class:`WebhookReceiver` on 127.0.0.1 (any path); ``url`` is its root."""
    receiver = WebhookReceiver()
    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", receiver._handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    receiver.url = f"http://127.0.0.1:{port}"
    try:
        yield receiver
    finally:
        await runner.cleanup()
