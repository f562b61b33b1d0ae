"""Settings shared by every service (pydantic-settings, environment prefix ``TAILOR_``).

Each service has one settings class, in its ``config.py``, that extends
:class:`CommonSettings` with its own knobs. Nothing else in the code reads the
environment. Every knob has a default that works on a laptop: filesystem object
store and SQLite under ``data_dir``, the built-in ``tailor-tiny`` base model, all
services on 127.0.0.1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.base_models import BaseModelSpec, default_base_models

MiB = 1024 * 1024


class CommonSettings(BaseSettings):
    """Knobs every service shares: where state lives, how to reach the others, logging."""

    model_config = SettingsConfigDict(env_prefix="TAILOR_", extra="ignore", frozen=True)

    data_dir: Path = Field(
        Path(".tailor"),
        description="Local state: SQLite records, the filesystem object store, built models, caches.",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="Log level.")
    log_format: Literal["json", "console"] = Field(
        "json", description="`json` (one structlog JSON object per line) or `console` (for humans)."
    )

    # Object store. Empty endpoint = the filesystem backend under data_dir/objects.
    object_store_endpoint: str = Field(
        "", description="S3/MinIO endpoint `host:port`; empty uses the filesystem backend in data_dir."
    )
    object_store_bucket: str = Field("tailor", description="Bucket holding all of Tailor's objects.")
    object_store_access_key: SecretStr = Field(SecretStr(""), description="S3/MinIO access key.")
    object_store_secret_key: SecretStr = Field(SecretStr(""), description="S3/MinIO secret key.")
    object_store_secure: bool = Field(False, description="Use HTTPS to reach the S3/MinIO endpoint.")
    object_store_region: str = Field("", description="S3 region; empty lets the SDK discover it.")
    object_store_part_size_mib: int = Field(
        16, ge=5, le=5120, description="Multipart upload part size (S3 requires at least 5 MiB)."
    )

    # gRPC, both sides.
    grpc_max_message_bytes: int = Field(
        8 * MiB,
        ge=1 * MiB,
        description="Largest gRPC message sent or received; uploads stream in smaller chunks.",
    )
    grpc_shutdown_grace_s: float = Field(
        10.0, ge=0, description="On SIGTERM, how long in-flight RPCs may finish before they are cancelled."
    )
    grpc_reflection: bool = Field(True, description="Serve gRPC reflection (grpcurl list/describe).")
    rpc_timeout_s: float = Field(
        30.0, gt=0, description="Deadline of an internal unary RPC when the caller gives none."
    )

    # Where the services are, as seen by their callers.
    dataset_addr: str = Field("127.0.0.1:50051", description="Address of the dataset service.")
    trainer_addr: str = Field("127.0.0.1:50052", description="Address of the trainer service.")
    inference_addr: str = Field("127.0.0.1:50053", description="Address of the inference service.")

    base_models: dict[str, BaseModelSpec] = Field(
        default_factory=default_base_models,
        description=(
            "JSON map of base model name -> {source, lora_learning_rate, max_seq_length, ...}; "
            "source is a Hugging Face id, a local path or `builtin:tailor-tiny`."
        ),
    )

    @property
    def models_dir(self) -> Path:
        """Where built-in base models are materialised."""
        return self.data_dir / "models"

    @property
    def objects_dir(self) -> Path:
        """Root of the filesystem object store backend."""
        return self.data_dir / "objects"
