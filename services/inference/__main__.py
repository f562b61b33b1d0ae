"""``python -m services.inference``: run the inference service until SIGTERM."""

from __future__ import annotations

from services.common.grpc_server import run_service
from services.common.settings import load_settings
from services.inference.config import InferenceSettings
from services.inference.server import build_server


def main() -> None:
    settings = load_settings(InferenceSettings)
    run_service("inference", settings, lambda: build_server(settings), metrics_port=settings.inference_metrics_port)


if __name__ == "__main__":
    main()
