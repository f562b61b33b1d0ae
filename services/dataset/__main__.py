"""``python -m services.dataset``: run the dataset service until SIGTERM."""

from __future__ import annotations


def main() -> None:
    # Imported here, not at the top: validation worker processes are spawned, and spawning
    # imports this module again in each worker, which needs none of the server.
    from services.common.grpc_server import run_service
    from services.common.settings import load_settings
    from services.dataset.config import DatasetSettings
    from services.dataset.server import build_server

    settings = load_settings(DatasetSettings)
    run_service(
        "dataset", settings, lambda: build_server(settings), metrics_port=settings.dataset_metrics_port
    )


if __name__ == "__main__":
    main()
