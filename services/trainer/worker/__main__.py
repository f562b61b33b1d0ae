"""``python -m services.trainer.worker``: train the job named by ``TAILOR_WORKER_*`` and exit."""

from __future__ import annotations

import asyncio
import sys

from services.common.logging import configure_logging
from services.common.settings import load_settings
from services.trainer.worker.config import WorkerSettings
from services.trainer.worker.run import run_worker


def main() -> None:
    settings = load_settings(WorkerSettings)
    configure_logging("trainer-worker", level=settings.log_level, fmt=settings.log_format)
    sys.exit(asyncio.run(run_worker(settings)))


if __name__ == "__main__":
    main()
