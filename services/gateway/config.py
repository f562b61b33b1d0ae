"""Settings of the gateway (environment prefix ``TAILOR_``)."""

from __future__ import annotations

import re

from pydantic import Field, SecretStr, field_validator

from services.common.settings import CommonSettings
from services.common.tenancy import validate_organization_id

_KEY = re.compile(r"^[A-Za-z0-9_\-.]{8,256}$")


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

    gateway_host: str = Field("127.0.0.1", description="Address the gateway's HTTP server binds.")
    gateway_port: int = Field(8000, ge=1, le=65535, description="Port of the gateway's HTTP server.")
    api_keys: SecretStr = Field(
        SecretStr(""),
        description="API keys as `key=organization,key=organization`; the local stack generates one when empty.",
    )

    @field_validator("api_keys")
    @classmethod
    def _keys_parse(cls, value: SecretStr) -> SecretStr:
        parse_api_keys(value.get_secret_value())
        return value

    def api_key_organizations(self) -> dict[str, str]:
        """{API key: organization id}."""
        return parse_api_keys(self.api_keys.get_secret_value())

    @property
    def base_url(self) -> str:
        return f"http://{self.gateway_host}:{self.gateway_port}/v1"
