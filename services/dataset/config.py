"""Settings of the dataset service (environment prefix ``TAILOR_``)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from services.common.settings import CommonSettings, MiB

GiB = 1024 * MiB


class DatasetSettings(CommonSettings):
    """The common settings plus the dataset service's own."""

    service_identity: ClassVar[str | None] = "dataset"

    dataset_listen: str = Field("127.0.0.1:50051", description="Address the dataset gRPC server binds.")
    dataset_metrics_port: int = Field(
        0, ge=0, le=65535, description="Port of the dataset service's Prometheus /metrics; 0 disables it."
    )
    dataset_database_url: str = Field(
        "",
        description=(
            "SQLAlchemy async URL of the file records; empty uses SQLite at data_dir/records/dataset.db. "
            "Example: postgresql+asyncpg://u:p@db/tailor."
        ),
    )
    dataset_max_file_bytes: int = Field(
        2 * GiB,
        ge=1,
        description="Largest file accepted; a larger upload is refused (RESOURCE_EXHAUSTED) and nothing is kept.",
    )
    dataset_max_problems: int = Field(
        20, ge=1, le=1000, description="How many validation problems a file in error keeps (the first ones)."
    )
    dataset_max_line_bytes: int = Field(
        16 * MiB,
        ge=1024,
        description=(
            "Longest line (one example) of a fine-tuning file; a longer one is reported, not buffered. "
            "Bounds the memory one upload's validation takes."
        ),
    )
    dataset_validation_processes: int = Field(
        2,
        ge=0,
        le=64,
        description=(
            "Worker processes checking fine-tuning uploads beside the stream (started on first use); "
            "0 checks in a thread of the service, slower as it shares the interpreter with the uploads."
        ),
    )
