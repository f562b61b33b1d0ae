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
with ``Retry-After``, which the SDK honours before retrying. Every authenticated answer
carries the bucket as OpenAI's ``x-ratelimit-{limit,remaining,reset}-requests`` headers.

Both checks run in :mod:`.request_guard`, an ASGI layer in front of the app, so that a
request with a wrong key, or over its rate, is answered before a byte of its body is read
(FastAPI reads and parses a body before it runs a route's dependencies). The route
dependency :func:`authenticate` only takes the :class:`Caller` that layer left in the
request's state, and declares the Bearer scheme in /openapi.json.
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
from fastapi.security.utils import get_authorization_scheme_param

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


def format_duration(seconds: float) -> str:
    """A duration as OpenAI writes ``x-ratelimit-reset-*``, Go's style to the ms: ``120ms``, ``6m0s``."""
    milliseconds = round(seconds * 1000)
    if milliseconds == 0:
        return "0s"
    if milliseconds < 1000:
        return f"{milliseconds}ms"
    hours, rest = divmod(milliseconds, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    whole, fraction = divmod(rest, 1000)
    text = f"{whole}.{fraction:03d}".rstrip("0").rstrip(".") + "s"
    if hours or minutes:
        text = f"{minutes}m{text}"
    if hours:
        text = f"{hours}h{text}"
    return text


@dataclass(frozen=True)
class Quota:
    """A key's bucket right after a request took (or failed to take) its token."""

    limit: int
    remaining: int
    reset_s: float  # until the bucket is full again
    retry_after_s: float  # 0 when the request was granted, else the wait for one token

    def headers(self) -> list[tuple[bytes, bytes]]:
        """OpenAI's ``x-ratelimit-*-requests`` headers, as ASGI header pairs."""
        return [
            (b"x-ratelimit-limit-requests", str(self.limit).encode()),
            (b"x-ratelimit-remaining-requests", str(self.remaining).encode()),
            (b"x-ratelimit-reset-requests", format_duration(self.reset_s).encode()),
        ]


class RateLimiter:
    """A token bucket per key digest: ``per_minute`` burst, refilled at ``per_minute`` per minute."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._clock = clock
        # digest -> (tokens, time of last update); one entry per configured key at most
        self._buckets: dict[str, tuple[float, float]] = {}

    def acquire(self, digest: str) -> Quota | None:
        """Takes one token and says what is left; None when the limit is disabled (0)."""
        if self.per_minute == 0:
            return None
        capacity = float(self.per_minute)
        now = self._clock()
        rate = capacity / 60.0
        tokens, last = self._buckets.get(digest, (capacity, now))
        tokens = min(capacity, tokens + (now - last) * rate)
        retry_after_s = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            retry_after_s = (1.0 - tokens) / rate
        self._buckets[digest] = (tokens, now)
        return Quota(self.per_minute, math.floor(tokens), (capacity - tokens) / rate, retry_after_s)


def identify(keys: ApiKeys, authorization: str | None) -> tuple[str, str]:
    """(organization, key digest) of an ``Authorization: Bearer`` header; 401 without a valid key."""
    scheme, key = get_authorization_scheme_param(authorization)
    if not key or scheme.lower() != "bearer":
        raise OpenAIError(401, _NO_KEY_MESSAGE, code="invalid_api_key", headers=_CHALLENGE)
    match = keys.organization_of(key)
    if match is None:
        raise OpenAIError(401, "Incorrect API key provided.", code="invalid_api_key", headers=_CHALLENGE)
    return match


def rate_limited(quota: Quota) -> OpenAIError:
    """429 for a request over its key's rate, with the wait the SDK honours before retrying."""
    retry_after = max(1, math.ceil(quota.retry_after_s))
    return OpenAIError(
        429,
        f"Rate limit reached for requests: {quota.limit} per minute per API key. "
        f"Please try again in {retry_after}s.",
        type="requests",
        code="rate_limit_exceeded",
        headers={"Retry-After": str(retry_after)},
    )


_CHALLENGE = {"WWW-Authenticate": "Bearer"}
# Declares the scheme in /openapi.json; auto_error=False: the key was checked before (see above).
_bearer = HTTPBearer(auto_error=False, description="An API key mapped to an organization.")


async def authenticate(
    request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Caller:
    """FastAPI dependency of every /v1 route: the caller :mod:`.request_guard` authenticated."""
    caller = getattr(request.state, "caller", None)
    if not isinstance(caller, Caller):
        # a route outside the guarded prefix asked for a caller: refuse rather than serve anonymously
        raise RuntimeError(f"{request.url.path} is not behind the request guard")
    return caller


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
