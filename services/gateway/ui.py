"""The web dashboard: the built assets of ``ui/`` served at ``/ui/``, and ``/`` redirecting there.

The pages are static files committed under ``ui_static/`` (``make ui`` rebuilds them), so the
gateway serves them without Node.js. They need no key of their own: the browser sends the
API key the user signs in with on every call to ``/v1``, which the request guard checks as
for any client.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).with_name("ui_static")
PREFIX = "/ui"

router = APIRouter(include_in_schema=False)


@router.get("/")
async def to_dashboard() -> RedirectResponse:
    return RedirectResponse(f"{PREFIX}/")


def install_dashboard(app: FastAPI) -> None:
    """Serves the dashboard on ``app``: ``/ui/`` (index.html, app.js, app.css) and the redirect."""
    app.include_router(router)
    app.mount(PREFIX, StaticFiles(directory=STATIC_DIR, html=True), name="ui")
