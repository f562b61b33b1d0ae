"""Standard Webhooks signatures, the scheme OpenAI signs with and its SDK verifies.

A delivery carries ``webhook-id`` (the event id, the same on every attempt, so a receiver
can drop repeats), ``webhook-timestamp`` (Unix seconds of this attempt: the SDK refuses
one older than 5 minutes, so each retry is signed anew) and ``webhook-signature``:
``v1,`` and the base64 HMAC-SHA256 of ``"{id}.{timestamp}.{body}"`` keyed with the
secret's bytes (the base64 after ``whsec_``). The ``standardwebhooks`` package does the
same; these few lines spare a dependency and are tested against the SDK's verifier.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

SECRET_PREFIX = "whsec_"
_SECRET_BYTES = 32


def new_secret() -> str:
    """A fresh signing secret: ``whsec_`` and 32 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(_SECRET_BYTES)).decode()


def secret_hint(secret: str) -> str:
    """What may be shown of a secret after its creation: its prefix and last four characters."""
    return f"{SECRET_PREFIX}...{secret[-4:]}"


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value of one delivery attempt."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def signed_headers(secret: str, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """Every header of a delivery attempt: the three Standard Webhooks ones and the content type."""
    return {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(secret, message_id, timestamp, body),
    }
