"""Settings of the trainer service (environment prefix ``TAILOR_``)."""

from __future__ import annotations

from pydantic import Field

from services.common.settings import CommonSettings


class TrainerSettings(CommonSettings):
    """The common settings plus the trainer service's own."""

    trainer_listen: str = Field("127.0.0.1:50052", description="Address the trainer gRPC server binds.")
    trainer_metrics_port: int = Field(
        0, ge=0, le=65535, description="Port of the trainer service's Prometheus /metrics; 0 disables it."
    )
