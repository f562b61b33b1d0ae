"""Settings of the dataset service (environment prefix ``TAILOR_``)."""

from __future__ import annotations

from pydantic import Field

from services.common.settings import CommonSettings


class DatasetSettings(CommonSettings):
    """The common settings plus the dataset service's own."""

    dataset_listen: str = Field("127.0.0.1:50051", description="Address the dataset gRPC server binds.")
    dataset_metrics_port: int = Field(
        0, ge=0, le=65535, description="Port of the dataset service's Prometheus /metrics; 0 disables it."
    )
