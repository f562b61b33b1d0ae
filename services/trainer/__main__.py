"""``python -m services.trainer``: run the trainer service until SIGTERM."""

from __future__ import annotations

from services.common.grpc_server import run_service
from services.common.settings import load_settings
from services.trainer.config import TrainerSettings
from services.trainer.server import build_server


def main() -> None:
    settings = load_settings(TrainerSettings)
    run_service("trainer", settings, lambda: build_server(settings), metrics_port=settings.trainer_metrics_port)


if __name__ == "__main__":
    main()
