"""``python -m services.gateway``: serve the HTTP API with uvicorn until SIGTERM."""

from __future__ import annotations

import uvicorn

from services.common.internal_auth.setup import check_internal_auth
from services.common.logging import configure_logging
from services.common.settings import load_settings
from services.gateway.app import create_app
from services.gateway.config import GatewaySettings


def main() -> None:
    settings = load_settings(GatewaySettings)
    configure_logging("gateway", level=settings.log_level, fmt=settings.log_format)
    check_internal_auth(settings, verifies=False)  # it signs every internal call, serves none
    uvicorn.run(
        create_app(settings),
        host=settings.gateway_host,
        port=settings.gateway_port,
        log_config=None,  # uvicorn's loggers go through structlog (configure_logging)
        access_log=False,  # the request middleware writes the access line, with the organization
        # uvicorn[standard]'s C event loop and HTTP parser, named so that an install without them
        # fails at startup instead of silently serving streams at a fraction of the speed
        loop="uvloop",
        http="httptools",
        timeout_graceful_shutdown=int(settings.grpc_shutdown_grace_s),
    )


if __name__ == "__main__":
    main()
