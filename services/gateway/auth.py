"""API keys -> organizations, and a per-key rate limit.

Keys come from two sources, used together:

* ``TAILOR_API_KEYS`` (``key=organization,...``): local runs and tests;
* ``TAILOR_GATEWAY_API_KEYS_FILE``: one ``sha256hex=organization`` per line, so that a
  Kubernetes secret mounted into the pod never holds a usable key.

Either way only SHA-256 digests are kept in memory. A presented key is hashed and compared
with *every* configured digest through :func:`hmac.compare_digest`, without stopping at a
match, so the time taken says nothing about which key (or how much of one) matched. Keys
are never logged: log lines carry the organization only.

The hashed key file is the production path (deploy/k8s mounts it from a Secret); plaintext
``TAILOR_API_KEYS`` is for local runs. Its lines come from ``python -m services.gateway.auth
hash-key ORGANIZATION``, which reads keys on stdin (never argv: a command line is visible to
every user of the machine and kept in shell history) and prints one ``sha256hex=ORGANIZATION``
line per key; ``new-key ORGANIZATION`` makes a fresh key, prints it once on stderr and its
line on stdout.

The rate limit is a token bucket per key: ``gateway_rate_limit_per_minute`` tokens of
burst, refilled continuously at that rate. An empty bucket is 429 ``rate_limit_exceeded``
with ``Retry-After``, which the SDK honours before retrying.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import math
import re
import secrets
import sys
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import structlog
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.common.errors import InvalidArgument
from services.common.tenancy import call_context, validate_organization_id
from services.gateway.errors import OpenAIError

log = structlog.get_logger("tailor.gateway.auth")

_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
_NO_KEY_MESSAGE = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header "
    "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
)


def key_digest(key: str) -> str:
    """The hex SHA-256 of a key: what the hashed key file holds (``printf %s KEY | sha256sum``)."""
    return hashlib.sha256(key.encode()).hexdigest()


def parse_hashed_keys(text: str, source: str) -> dict[str, str]:
    """Parses ``sha256hex=organization`` lines ('#' comments and blank lines skipped) into {digest: org}."""
    digests: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        digest, sep, organization = line.partition("=")
        digest = digest.strip().lower()
        if not sep or not _SHA256_HEX.match(digest):
            # the line may be a plain key pasted by mistake: never echo it
            raise ValueError(f"{source} line {number}: expected 'sha256hex=organization'")
        try:
            digests[digest] = validate_organization_id(organization.strip())
        except InvalidArgument as error:
            raise ValueError(f"{source} line {number}: {error.message}") from None
    return digests


@dataclass(frozen=True)
class Caller:
    """Who is calling: the organization the key maps to, and this request's id."""

    organization: str
    request_id: str

    def rpc_context(self) -> AbstractContextManager[None]:
        """Makes internal gRPC calls inside the block carry this organization and request id."""
        return call_context(self.organization, self.request_id)


class ApiKeys:
    """The configured keys as digests, and the constant-time lookup of a presented key."""

    def __init__(self, plain_keys: Mapping[str, str], key_file: Path | None = None) -> None:
        self._digests: dict[str, str] = {key_digest(key): org for key, org in plain_keys.items()}
        if key_file is not None:
            self._digests.update(parse_hashed_keys(key_file.read_text(), str(key_file)))
        if not self._digests:
            log.warning("no API keys configured: every /v1 request will be refused")

    def __len__(self) -> int:
        return len(self._digests)

    def organization_of(self, key: str) -> tuple[str, str] | None:
        """(organization, digest) of ``key``, or None; compares against every digest."""
        presented = key_digest(key)
        found: str | None = None
        for digest, organization in self._digests.items():
            if hmac.compare_digest(presented, digest):
                found = organization
        return (found, presented) if found is not None else None


class RateLimiter:
    """A token bucket per key digest: ``per_minute`` burst, refilled at ``per_minute`` per minute."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._clock = clock
        # digest -> (tokens, time of last update); one entry per configured key at most
        self._buckets: dict[str, tuple[float, float]] = {}

    def acquire(self, digest: str) -> float:
        """Takes one token; returns 0 when granted, else the seconds until one is available."""
        if self.per_minute == 0:
            return 0.0
        now = self._clock()
        rate = self.per_minute / 60.0
        tokens, last = self._buckets.get(digest, (float(self.per_minute), now))
        tokens = min(float(self.per_minute), tokens + (now - last) * rate)
        if tokens >= 1.0:
            self._buckets[digest] = (tokens - 1.0, now)
            return 0.0
        self._buckets[digest] = (tokens, now)
        return (1.0 - tokens) / rate


# Declares the scheme in /openapi.json; auto_error=False so that a missing key is our 401, not a 403.
_bearer = HTTPBearer(auto_error=False, description="An API key mapped to an organization.")


async def authenticate(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Caller:
    """FastAPI dependency of every /v1 route: 401 without a valid key, 429 over the key's rate."""
    keys: ApiKeys = request.app.state.api_keys
    limiter: RateLimiter = request.app.state.rate_limiter
    key = credentials.credentials if credentials is not None else None
    match = keys.organization_of(key) if key is not None else None
    if match is None:
        message = _NO_KEY_MESSAGE if key is None else "Incorrect API key provided."
        raise OpenAIError(401, message, code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})
    organization, digest = match
    request.state.organization = organization  # for the access log line
    structlog.contextvars.bind_contextvars(organization=organization)
    wait_s = limiter.acquire(digest)
    if wait_s > 0:
        retry_after = max(1, math.ceil(wait_s))
        raise OpenAIError(
            429,
            f"Rate limit reached for requests: {limiter.per_minute} per minute per API key. "
            f"Please try again in {retry_after}s.",
            type="requests",
            code="rate_limit_exceeded",
            headers={"Retry-After": str(retry_after)},
        )
    return Caller(organization=organization, request_id=request.state.request_id)


CallerDep = Annotated[Caller, Depends(authenticate)]


# The hashed key file's lines, from the command line.

KEY_PREFIX = "sk-tailor-"


def hashed_key_line(key: str, organization: str) -> str:
    """One line of the hashed key file: ``sha256hex=organization``."""
    return f"{key_digest(key)}={validate_organization_id(organization)}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.gateway.auth",
        description="Lines for TAILOR_GATEWAY_API_KEYS_FILE (sha256hex=organization).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    hash_key = commands.add_parser("hash-key", help="hash the keys read from stdin, one per line")
    hash_key.add_argument("organization")
    new_key = commands.add_parser("new-key", help="make a key: the key on stderr, its line on stdout")
    new_key.add_argument("organization")
    args = parser.parse_args(argv)
    try:
        validate_organization_id(args.organization)
    except InvalidArgument as error:
        parser.error(error.message)
    if args.command == "new-key":
        key = KEY_PREFIX + secrets.token_hex(24)
        print(key, file=sys.stderr)
        print(hashed_key_line(key, args.organization))
        return 0
    keys = [line.strip() for line in sys.stdin if line.strip()]
    if not keys:
        parser.error("no key on stdin")
    for key in keys:
        print(hashed_key_line(key, args.organization))
    return 0


if __name__ == "__main__":
    sys.exit(main())
