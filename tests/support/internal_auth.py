"""The test process's internal-auth keys: real tokens, real verification, one key for every identity.

Tests play several services in one process (a test client as the gateway, an in-process
trainer calling an in-process dataset service), so the test key set publishes one key
pair under every identity's name: any in-process caller signs valid tokens for its own
identity, and every server still verifies signature, audience, expiry and the policy.
Tests of refusals mint their own tokens with :func:`service_token` (other keys, other
issuers, expired, misaddressed).

:func:`install` (called by tests/conftest.py before any settings are read) points
``TAILOR_INTERNAL_AUTH_*`` at this key set, with the gateway as the default identity: a
client opened on plain settings calls as the gateway does, for the organization bound by
``as_organization``.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.common.internal_auth.keys import IDENTITIES, key_id, load_private_key, write_key_pair
from services.common.internal_auth.tokens import ALGORITHM, mint_worker_token


class TestKeySet:
    """One private key, its public key published as every identity's, in a temporary directory."""

    __test__ = False  # not a test class for pytest

    def __init__(self, root: Path) -> None:
        self.root = root
        self.private_key_file = root / "private.pem"
        self.public_dir = root / "public"
        self.key: Ed25519PrivateKey = write_key_pair(
            self.private_key_file, self.public_dir / f"{IDENTITIES[0]}.pem"
        )
        for identity in IDENTITIES[1:]:
            shutil.copy(self.public_dir / f"{IDENTITIES[0]}.pem", self.public_dir / f"{identity}.pem")

    def environment(self, identity: str = "gateway") -> dict[str, str]:
        return {
            "TAILOR_INTERNAL_AUTH_PRIVATE_KEY_FILE": str(self.private_key_file),
            "TAILOR_INTERNAL_AUTH_PUBLIC_KEYS_DIR": str(self.public_dir),
            "TAILOR_INTERNAL_AUTH_IDENTITY": identity,
        }


_KEYS: TestKeySet | None = None


def test_keys() -> TestKeySet:
    global _KEYS
    if _KEYS is None:
        root = Path(tempfile.mkdtemp(prefix="tailor-test-auth-"))
        atexit.register(shutil.rmtree, root, True)
        _KEYS = TestKeySet(root)
    return _KEYS


def install() -> TestKeySet:
    """Sets the process's TAILOR_INTERNAL_AUTH_* variables to the test key set (unless already set)."""
    keys = test_keys()
    for name, value in keys.environment().items():
        os.environ.setdefault(name, value)
    return keys


def service_token(
    issuer: str,
    audience: str | list[str],
    organization: str | None = None,
    *,
    key: Ed25519PrivateKey | None = None,
    ttl_s: int = 60,
    issued_at: float | None = None,
    **claims: object,
) -> str:
    """A service token as ``issuer`` would sign it (the test key unless ``key``)."""
    signing_key = key or load_private_key(Path(os.environ["TAILOR_INTERNAL_AUTH_PRIVATE_KEY_FILE"]))
    issued = int(time.time() if issued_at is None else issued_at)
    body: dict[str, object] = {
        "iss": issuer,
        "aud": audience,
        "iat": issued,
        "exp": issued + ttl_s,
        "jti": uuid.uuid4().hex,
    }
    if organization:
        body["org"] = organization
    body.update(claims)
    return jwt.encode(
        body, signing_key, algorithm=ALGORITHM, headers={"kid": key_id(signing_key.public_key())}
    )


def worker_token(
    organization: str, job_id: str, attempt_id: str, files: list[str], *, ttl_s: int = 3600
) -> str:
    """A worker token as the trainer would give its launch."""
    key = load_private_key(Path(os.environ["TAILOR_INTERNAL_AUTH_PRIVATE_KEY_FILE"]))
    return mint_worker_token(
        key,
        organization=organization,
        job_id=job_id,
        attempt_id=attempt_id,
        files=files,
        expires_at=time.time() + ttl_s,
    )


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    """Call metadata carrying ``token``."""
    return (("authorization", f"Bearer {token}"),)
