"""Settings of the inference service (environment prefix ``TAILOR_``)."""

from __future__ import annotations

from pydantic import Field

from services.common.settings import CommonSettings


class InferenceSettings(CommonSettings):
    """The common settings plus the inference service's own."""

    inference_listen: str = Field("127.0.0.1:50053", description="Address the inference gRPC server binds.")
    inference_metrics_port: int = Field(
        0, ge=0, le=65535, description="Port of the inference service's Prometheus /metrics; 0 disables it."
    )
