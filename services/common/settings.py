"""Settings shared by every service (pydantic-settings, environment prefix ``TAILOR_``).

Each service has one settings class, in its ``config.py``, that extends
:class:`CommonSettings` with its own knobs. Nothing else in the code reads the
environment. Every knob has a default that works on a laptop: filesystem object
store and SQLite under ``data_dir``, the built-in ``tailor-tiny`` base model, all
services on 127.0.0.1.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar, Literal, TypeVar

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.base_models import VLLM_LORA_RANKS, BaseModelSpec, default_base_models

MiB = 1024 * 1024
_BASE_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$")
SettingsT = TypeVar("SettingsT", bound=BaseSettings)


class CommonSettings(BaseSettings):
    """Knobs every service shares: where state lives, how to reach the others, logging."""

    # The identity a service's own settings class signs as by default (see internal_auth_identity).
    service_identity: ClassVar[str | None] = None

    # hide_input_in_errors: a malformed value may be a secret (API keys, S3 credentials)
    model_config = SettingsConfigDict(
        env_prefix="TAILOR_", extra="ignore", frozen=True, hide_input_in_errors=True
    )

    data_dir: Path = Field(
        Path(".tailor"),
        description="Local state: SQLite records, the filesystem object store, built models, caches.",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="Log level.")
    log_format: Literal["auto", "json", "console"] = Field(
        "auto",
        description=(
            "`json` (one structlog JSON object per line), `console` (aligned text for humans), or "
            "`auto`: `console` when stdout is a terminal, `json` otherwise."
        ),
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
    object_store_abandoned_upload_s: float = Field(
        3600.0,
        ge=0,
        description=(
            "On S3, an incomplete multipart upload started longer ago than this is taken for one a killed "
            "process left, and aborted when a service that writes there starts. Must exceed the longest "
            "upload (a file's is bounded by TAILOR_GATEWAY_TRANSFER_TIMEOUT_S), or uploads still running "
            "in other processes would be aborted. The filesystem store needs no delay: a dead writer's "
            "temporary file has lost its lock."
        ),
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
        30.0, gt=0, description="Deadline of an internal RPC when the caller gives none (long streams pass their own)."
    )

    # Internal authentication (services/common/internal_auth): signed per-call tokens.
    internal_auth_private_key_file: Path | None = Field(
        None,
        description=(
            "This process's Ed25519 private key (PEM) that signs its internal calls "
            "(Kubernetes: `/etc/tailor/internal-auth/private.pem`; `make up`: `<data_dir>/internal-auth/<identity>.pem`)."
        ),
    )
    internal_auth_public_keys_dir: Path | None = Field(
        None,
        description=(
            "Directory of the callers' public keys, `<issuer>*.pem` (several per issuer during a rotation; "
            "Kubernetes: `/etc/tailor/internal-auth/public/`; `make up`: `<data_dir>/internal-auth/public/`)."
        ),
    )
    internal_auth_identity: Literal["gateway", "trainer", "dataset", "inference"] | None = Field(
        None,
        description="The identity this process signs as (the token issuer); each service defaults to its own name.",
    )
    internal_auth_disabled: bool = Field(
        False,
        description=(
            "Turn internal authentication off (servers trust the `x-tailor-organization` header). "
            "For unit tests only: never in a deployment."
        ),
    )

    # Where the services are, as seen by their callers.
    dataset_addr: str = Field("127.0.0.1:50051", description="Address of the dataset service.")
    trainer_addr: str = Field("127.0.0.1:50052", description="Address of the trainer service.")
    inference_addr: str = Field(
        "127.0.0.1:50053",
        description=(
            "Address of the inference service: a comma list of `host:port` and `dns:///name:port` "
            "targets (one headless Service per base model), each resolved into replicas."
        ),
    )

    # One limit for the whole platform: a rank the trainer accepts must be one inference serves.
    max_lora_rank: int = Field(
        64,
        description=(
            "Largest LoRA rank a job may train and inference serves (vLLM's --max-lora-rank; LoRA slots "
            "are sized by it). One of vLLM's: 1, 8, 16, 32, 64, 128, 256, 320, 512."
        ),
    )

    base_models: dict[str, BaseModelSpec] = Field(
        default_factory=default_base_models,
        description=(
            "JSON map of base model name -> {source, revision, family, lora_target_modules, "
            "lora_learning_rate, lora_rank, max_seq_length, tool_call_format, chat_template}; source is a "
            "Hugging Face id (read from the local hub cache, HF_HOME), a local path or `builtin:tailor-tiny`; "
            "the other fields default to the model family's (services/common/model_families.py)."
        ),
    )

    @field_validator("max_lora_rank")
    @classmethod
    def _rank_vllm_accepts(cls, rank: int) -> int:
        if rank not in VLLM_LORA_RANKS:
            raise ValueError(f"must be a rank vLLM accepts: {sorted(VLLM_LORA_RANKS)}")
        return rank

    @field_validator("base_models")
    @classmethod
    def _names_fit_model_ids(cls, models: dict[str, BaseModelSpec]) -> dict[str, BaseModelSpec]:
        # A base name is the second segment of `ft:{base}:{org}:{suffix}:{id}` and a URL path part.
        for name in models:
            if not _BASE_MODEL_NAME.match(name):
                raise ValueError(
                    f"base model name {name!r}: 1-128 letters, digits, '.', '_', '-' or '/', no ':'"
                )
        return models

    @model_validator(mode="after")
    def _default_ranks_within_the_limit(self) -> CommonSettings:
        # An entry's own rank only: a family's default is capped at max_lora_rank where it applies.
        for name, spec in self.base_models.items():
            if spec.lora_rank is not None and spec.lora_rank > self.max_lora_rank:
                raise ValueError(
                    f"base model {name!r}: its default lora_rank {spec.lora_rank} is over "
                    f"max_lora_rank {self.max_lora_rank}, so its jobs would train adapters no replica serves"
                )
        return self

    @property
    def internal_auth_issuer(self) -> str | None:
        """The identity this process signs its internal calls as: the setting, else its service's own name."""
        return self.internal_auth_identity or self.service_identity

    @property
    def models_dir(self) -> Path:
        """Where built-in base models are materialised."""
        return self.data_dir / "models"

    @property
    def objects_dir(self) -> Path:
        """Root of the filesystem object store backend."""
        return self.data_dir / "objects"


def load_settings(cls: type[SettingsT]) -> SettingsT:
    """Reads ``cls`` from the environment; on invalid values exits with a message naming them.

    Every Tailor process starts here, so this is also where its data directory is made
    private (umask 0o077, the directory 0700; :mod:`services.common.data_dir`).
    """
    try:
        settings = cls()
    except ValidationError as error:
        problems = "; ".join(
            f"TAILOR_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in error.errors()
        )
        raise SystemExit(f"invalid configuration: {problems}") from None
    if isinstance(settings, CommonSettings):
        from services.common.data_dir import make_data_dir_private

        make_data_dir_private(settings.data_dir)
    return settings
