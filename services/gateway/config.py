"""Settings of the gateway (environment prefix ``TAILOR_``)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar

from pydantic import Field, SecretStr, field_validator, model_validator

from services.common.settings import CommonSettings, MiB
from services.common.tenancy import validate_organization_id

_KEY = re.compile(r"^[A-Za-z0-9_\-.]{8,256}$")
# The most a JSON body grows on its way into one gRPC message: chat `tools` are re-serialized
# by json.dumps with its ASCII escapes, where one 4-byte UTF-8 character becomes a 12-byte
# surrogate pair. A body under the JSON limit therefore always fits the gRPC message limit.
WORST_JSON_TO_GRPC_GROWTH = 3


def parse_api_keys(spec: str) -> dict[str, str]:
    """Parses ``key=org,key=org`` into {key: organization}; raises ValueError naming the bad entry."""
    keys: dict[str, str] = {}
    for position, entry in enumerate(filter(None, (e.strip() for e in spec.split(","))), start=1):
        key, sep, organization = entry.partition("=")
        if not sep or not key or not organization:
            raise ValueError(f"entry {position} of TAILOR_API_KEYS is not 'key=organization'")
        if not _KEY.match(key):
            raise ValueError(
                f"entry {position} of TAILOR_API_KEYS: a key is 8-256 letters, digits, '_', '-' or '.'"
            )
        validate_organization_id(organization)
        if key in keys:
            raise ValueError(f"entry {position} of TAILOR_API_KEYS repeats a key")
        keys[key] = organization
    return keys


class GatewaySettings(CommonSettings):
    """The common settings plus the gateway's own."""

    service_identity: ClassVar[str | None] = "gateway"

    gateway_host: str = Field("127.0.0.1", description="Address the gateway's HTTP server binds.")
    gateway_port: int = Field(8000, ge=1, le=65535, description="Port of the gateway's HTTP server.")
    api_keys: SecretStr = Field(
        SecretStr(""),
        description=(
            "Plaintext API keys as `key=organization,key=organization`, for local use (the local stack "
            "generates one when empty); deployments use TAILOR_GATEWAY_API_KEYS_FILE."
        ),
    )
    gateway_api_keys_file: Path | None = Field(
        None,
        description=(
            "File of hashed API keys, one `sha256hex=organization` per line (`#` comments), "
            "e.g. a mounted Kubernetes secret; used together with TAILOR_API_KEYS."
        ),
    )
    gateway_rate_limit_per_minute: int = Field(
        600,
        ge=0,
        description="Requests per minute per API key (a token bucket with a burst of the same size); 0 disables.",
    )
    gateway_max_json_body_bytes: int = Field(
        2 * MiB,
        ge=64 * 1024,
        description=(
            "Largest JSON request body of any /v1 route but the file upload, counted while it is read "
            "(413 beyond). At most a third of TAILOR_GRPC_MAX_MESSAGE_BYTES, so that every accepted "
            "body fits one internal message; 2 MiB is far more text than any served context window."
        ),
    )
    gateway_max_upload_bytes: int = Field(
        512 * MiB, ge=1, description="Largest file `POST /v1/files` accepts (OpenAI's limit is 512 MB)."
    )
    gateway_transfer_timeout_s: float = Field(
        600.0, gt=0, description="Deadline of a file upload to, or download from, the dataset service."
    )
    gateway_generation_timeout_s: float = Field(
        600.0, gt=0, description="Deadline of one chat or text completion, streamed or not."
    )
    gateway_inference_refresh_interval_s: float = Field(
        5.0,
        gt=0,
        description=(
            "How often the gateway re-resolves the `dns:///` targets of TAILOR_INFERENCE_ADDR into "
            "replicas and asks each replica's health and base model."
        ),
    )
    gateway_inference_max_in_flight: int = Field(
        64,
        ge=1,
        description=(
            "Calls this gateway keeps running on one inference replica before an adapter's new "
            "requests spill to its next replica (a hot adapter warms a second one instead of queueing)."
        ),
    )
    gateway_inference_drain_timeout_s: float = Field(
        150.0,
        ge=0,
        description=(
            "How long calls still running on an inference replica that left discovery may go on "
            "before its channel is closed under them; the inference pods' termination grace period."
        ),
    )
    gateway_model_cache_ttl_s: float = Field(
        2.0,
        ge=0,
        description=(
            "How long chat and text completions reuse the registry's answer for a model name; the "
            "longest another gateway replica's delete of a model can go unnoticed here (this "
            "replica's own deletes take effect at once). 0 asks the registry on every request."
        ),
    )
    gateway_idempotency_window_s: int = Field(
        600,
        ge=0,
        description=(
            "A job creation repeated with the same body within this window (and no Idempotency-Key "
            "header) returns the first job while it has not ended, so the SDK's retries never start a "
            "second; 0 disables."
        ),
    )

    gateway_eval_sampler_enabled: bool = Field(
        True,
        description=(
            "Whether this gateway samples eval runs' items (a background task claiming them from the "
            "trainer); every replica may, the trainer's leases keep them from sampling an item twice."
        ),
    )
    gateway_eval_sampler_concurrency: int = Field(
        8, ge=1, le=64, description="Eval items this gateway generates answers for at once."
    )
    gateway_eval_sampler_batch: int = Field(
        16, ge=1, le=64, description="Eval items the sampler claims from the trainer at a time (one run's)."
    )
    gateway_eval_sampler_lease_s: int = Field(
        600,
        ge=10,
        le=86_400,
        description=(
            "How long a claimed eval item is the sampler's: one not recorded by then is handed out "
            "again. Longer than a batch takes to sample (batch / concurrency generations in a row)."
        ),
    )
    gateway_eval_sampler_idle_s: float = Field(
        1.0,
        gt=0,
        description=(
            "How long the sampler waits when there is no eval item to sample (or the trainer is "
            "unavailable), doubled while that lasts, up to TAILOR_GATEWAY_EVAL_SAMPLER_MAX_IDLE_S."
        ),
    )
    gateway_eval_sampler_max_idle_s: float = Field(
        5.0, gt=0, description="The longest wait between the sampler's claims while there is no work."
    )

    @field_validator("api_keys")
    @classmethod
    def _keys_parse(cls, value: SecretStr) -> SecretStr:
        parse_api_keys(value.get_secret_value())
        return value

    @model_validator(mode="after")
    def _json_bodies_fit_grpc_messages(self) -> GatewaySettings:
        if self.gateway_max_json_body_bytes * WORST_JSON_TO_GRPC_GROWTH > self.grpc_max_message_bytes:
            raise ValueError(
                f"TAILOR_GATEWAY_MAX_JSON_BODY_BYTES ({self.gateway_max_json_body_bytes}) must be at most "
                f"a third of TAILOR_GRPC_MAX_MESSAGE_BYTES ({self.grpc_max_message_bytes}): an accepted "
                "body must fit one internal message"
            )
        return self

    def api_key_organizations(self) -> dict[str, str]:
        """{API key: organization id}."""
        return parse_api_keys(self.api_keys.get_secret_value())

    @property
    def base_url(self) -> str:
        return f"http://{self.gateway_host}:{self.gateway_port}/v1"
