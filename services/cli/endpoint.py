"""Which Tailor API a client talks to, and with which key: the one rule of `tailor` and `make demo`.

In order: the command's own options (``--base-url``, ``--api-key``), then the SDK's
variables ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY`` (so a script's environment works
unchanged), then the local stack as ``make up`` runs it: the gateway's configured address,
and the first key of ``TAILOR_API_KEYS`` or, when that is unset, the key ``make up``
generated into the data directory (:func:`services.local_stack.existing_api_keys`).

The local stack's key is sent to the local gateway only: with another base URL and no key
given, there is no key, and :func:`no_key_message` says what to set.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from services.common.settings import load_settings
from services.gateway.config import GatewaySettings, parse_api_keys
from services.local_stack import API_KEY_FILE, existing_api_keys


@dataclass(frozen=True)
class Endpoint:
    """The chosen API: its base URL, its key (None when none was found) and where each came from."""

    base_url: str
    api_key: str | None
    # "--api-key", "OPENAI_API_KEY", "TAILOR_API_KEYS" or the local key file's path
    key_source: str
    # where `make up` keeps its key, named when no key was found
    local_key_source: str


def local_stack() -> tuple[str, str | None, str]:
    """The local stack's base URL, its first API key (None when there is none) and where that key is."""
    settings = load_settings(GatewaySettings)
    keys = parse_api_keys(existing_api_keys(settings))
    where = (
        "TAILOR_API_KEYS"
        if settings.api_keys.get_secret_value()
        else str((settings.data_dir / API_KEY_FILE).resolve())
    )
    return settings.base_url, next(iter(keys), None), where


def choose_endpoint(base_url: str | None = None, api_key: str | None = None) -> Endpoint:
    """The API and key a client uses, given the command's own options (see the module docstring)."""
    local_url, local_key, local_where = local_stack()
    base_url = base_url or os.environ.get("OPENAI_BASE_URL") or local_url
    if api_key:
        return Endpoint(base_url, api_key, "--api-key", local_where)
    if os.environ.get("OPENAI_API_KEY"):
        return Endpoint(base_url, os.environ["OPENAI_API_KEY"], "OPENAI_API_KEY", local_where)
    if base_url.rstrip("/") == local_url.rstrip("/"):
        return Endpoint(base_url, local_key, local_where, local_where)
    return Endpoint(base_url, None, local_where, local_where)


def no_key_message(endpoint: Endpoint) -> str:
    """What to set when no key was found: the SDK's variable, or how ``make up`` provides one."""
    return (
        f"no API key found for {endpoint.base_url}. Set the key of your Tailor gateway:\n"
        "  export OPENAI_API_KEY=<key>    # with TAILOR_API_KEYS=key=org,...: its first key, before the '='\n"
        "  export OPENAI_BASE_URL=<url>   # when the gateway is not this directory's `make up`\n"
        "  (or pass --api-key / --base-url)\n"
        f"or start the platform with `make up` here, which generates a key into {endpoint.local_key_source}\n"
        "(set TAILOR_DATA_DIR as for `make up` if it runs with another data directory)."
    )
