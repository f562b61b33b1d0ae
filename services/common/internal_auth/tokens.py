"""Minting and verifying the per-call tokens (EdDSA JWTs).

A service token: ``iss`` (the caller's identity), ``aud`` (the target service), ``iat``,
``exp`` (60 s), ``jti`` and, when the call acts for one, ``org``. The header's ``kid`` names
the signing key, so an issuer can have several public keys during a rotation.

A worker token (:func:`mint_worker_token`): ``iss=trainer``, ``sub=worker``, ``aud`` both the
trainer and the dataset service, ``org``, ``job``, ``attempt``, ``files`` (the job's training
and validation file ids) and ``exp`` at the attempt's deadline.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from services.common.internal_auth.keys import InternalAuthConfigError, key_id, load_public_keys

ALGORITHM = "EdDSA"
TOKEN_TTL_S = 60
# A cached token is reused until this close to its expiry (the call's own transit time included).
REUSE_MARGIN_S = 20
CLOCK_LEEWAY_S = 5
WORKER_SUBJECT = "worker"
# How often an unknown ``kid`` may trigger a rescan of the public keys directory (rotation).
RESCAN_INTERVAL_S = 10.0
VERIFIED_CACHE_S = 60.0
VERIFIED_CACHE_SIZE = 4096


class InvalidToken(Exception):
    """A token that does not authenticate its bearer; the message names why (never the token)."""


@dataclass(frozen=True)
class Principal:
    """Who a verified token says the caller is."""

    issuer: str
    organization: str | None = None
    worker: bool = False
    job_id: str = ""
    attempt_id: str = ""
    files: frozenset[str] = field(default_factory=frozenset)


class TokenMinter:
    """Signs service tokens as ``identity``; caches one per (audience, organization) until near expiry."""

    def __init__(
        self, identity: str, private_key: Ed25519PrivateKey, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.identity = identity
        self._key = private_key
        self._kid = key_id(private_key.public_key())
        self._clock = clock
        self._cache: dict[tuple[str, str | None], tuple[str, float]] = {}
        self._lock = threading.Lock()

    def token(self, audience: str, organization: str | None) -> str:
        now = self._clock()
        cache_key = (audience, organization)
        with self._lock:
            cached = self._cache.get(cache_key)
            if cached is not None and cached[1] - now > REUSE_MARGIN_S:
                return cached[0]
        issued = int(now)
        claims: dict[str, object] = {
            "iss": self.identity,
            "aud": audience,
            "iat": issued,
            "exp": issued + TOKEN_TTL_S,
            "jti": uuid.uuid4().hex,
        }
        if organization:
            claims["org"] = organization
        token = jwt.encode(claims, self._key, algorithm=ALGORITHM, headers={"kid": self._kid})
        with self._lock:
            if len(self._cache) > 4096:  # organizations come and go; keep the cache bounded
                self._cache.clear()
            self._cache[cache_key] = (token, float(issued + TOKEN_TTL_S))
        return token

    def worker_token(
        self, *, organization: str, job_id: str, attempt_id: str, files: Sequence[str], expires_at: float
    ) -> str:
        """A training worker's token, signed with this (the trainer's) key."""
        return mint_worker_token(
            self._key,
            organization=organization,
            job_id=job_id,
            attempt_id=attempt_id,
            files=files,
            expires_at=expires_at,
        )


def mint_worker_token(
    private_key: Ed25519PrivateKey,
    *,
    organization: str,
    job_id: str,
    attempt_id: str,
    files: Sequence[str],
    expires_at: float,
    now: float | None = None,
) -> str:
    """The trainer's token for one worker attempt (see the module docstring)."""
    issued = int(time.time() if now is None else now)
    claims = {
        "iss": "trainer",
        "sub": WORKER_SUBJECT,
        "aud": ["trainer", "dataset"],
        "iat": issued,
        "exp": int(expires_at),
        "jti": uuid.uuid4().hex,
        "org": organization,
        "job": job_id,
        "attempt": attempt_id,
        "files": sorted(f for f in files if f),
    }
    return jwt.encode(
        claims, private_key, algorithm=ALGORITHM, headers={"kid": key_id(private_key.public_key())}
    )


class TokenVerifier:
    """Checks tokens addressed to one of ``audiences`` against the public keys of their issuer."""

    def __init__(
        self,
        public_keys: dict[str, dict[str, Ed25519PublicKey]],
        audiences: Sequence[str],
        *,
        keys_dir: Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._keys = public_keys
        self._audiences = list(audiences)
        self._keys_dir = keys_dir
        self._clock = clock
        self._scanned_at = clock()
        # Tokens already verified, until their expiry (at most VERIFIED_CACHE_S): callers reuse a
        # token for tens of seconds, and a signature check costs far more than the lookup.
        self._verified: dict[str, tuple[Principal, float]] = {}

    @classmethod
    def from_dir(cls, keys_dir: Path, audiences: Sequence[str]) -> TokenVerifier:
        return cls(load_public_keys(keys_dir), audiences, keys_dir=keys_dir)

    def verify(self, token: str) -> Principal:
        now = self._clock()
        cached = self._verified.get(token)
        if cached is not None:
            if now < cached[1]:
                return cached[0]
            del self._verified[token]
        principal, expires = self._verify(token)
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            self._verified.clear()
        self._verified[token] = (principal, min(expires + CLOCK_LEEWAY_S, now + VERIFIED_CACHE_S))
        return principal

    def _verify(self, token: str) -> tuple[Principal, float]:
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise InvalidToken("malformed token") from None
        if header.get("alg") != ALGORITHM:
            raise InvalidToken("unexpected signing algorithm")
        issuer = unverified.get("iss")
        kid = header.get("kid")
        if not isinstance(issuer, str) or not isinstance(kid, str):
            raise InvalidToken("token names no issuer or key id")
        key = self._key(issuer, kid)
        if key is None:
            raise InvalidToken(f"unknown signing key for issuer {issuer!r}")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self._audiences,
                issuer=issuer,
                leeway=CLOCK_LEEWAY_S,
                options={"require": ["iss", "aud", "iat", "exp"]},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("token expired") from None
        except jwt.InvalidAudienceError:
            raise InvalidToken("token addressed to another service") from None
        except jwt.InvalidSignatureError:
            raise InvalidToken("bad signature") from None
        except jwt.PyJWTError as error:
            raise InvalidToken(f"invalid token ({type(error).__name__})") from None
        organization = claims.get("org")
        if organization is not None and not isinstance(organization, str):
            raise InvalidToken("malformed organization claim")
        if claims.get("sub") == WORKER_SUBJECT:
            if issuer != "trainer":
                raise InvalidToken("worker tokens are issued by the trainer only")
            files = claims.get("files") or []
            job, attempt = claims.get("job"), claims.get("attempt")
            if not (isinstance(job, str) and job and isinstance(attempt, str) and attempt and organization):
                raise InvalidToken("worker token without its job, attempt and organization")
            if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
                raise InvalidToken("malformed files claim")
            principal = Principal(
                issuer, organization, worker=True, job_id=job, attempt_id=attempt, files=frozenset(files)
            )
            return principal, float(claims["exp"])
        return Principal(issuer, organization or None), float(claims["exp"])

    def _key(self, issuer: str, kid: str) -> Ed25519PublicKey | None:
        key = self._keys.get(issuer, {}).get(kid)
        if (
            key is None
            and self._keys_dir is not None
            and self._clock() - self._scanned_at > RESCAN_INTERVAL_S
        ):
            # A key added since (a rotation): look again, at most every RESCAN_INTERVAL_S.
            self._scanned_at = self._clock()
            try:
                self._keys = load_public_keys(self._keys_dir)
            except InternalAuthConfigError:
                return None
            key = self._keys.get(issuer, {}).get(kid)
        return key
