"""From settings to the signer and verifier a process uses; the startup check of its keys."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from pathlib import Path

from services.common.internal_auth.keys import InternalAuthConfigError, load_private_key
from services.common.internal_auth.tokens import TokenMinter, TokenVerifier
from services.common.settings import CommonSettings

DISABLE_HINT = "(or TAILOR_INTERNAL_AUTH_DISABLED=true, in unit tests only)"


@functools.lru_cache(maxsize=16)
def _minter(identity: str, private_key_file: Path) -> TokenMinter:
    return TokenMinter(identity, load_private_key(private_key_file))


def token_minter(settings: CommonSettings) -> TokenMinter:
    """The signer of this process's calls (one per identity and key, shared by its channels)."""
    identity = settings.internal_auth_issuer
    if not identity:
        raise InternalAuthConfigError(
            f"internal auth is required: set TAILOR_INTERNAL_AUTH_IDENTITY {DISABLE_HINT}"
        )
    if settings.internal_auth_private_key_file is None:
        raise InternalAuthConfigError(
            f"internal auth is required: set TAILOR_INTERNAL_AUTH_PRIVATE_KEY_FILE to the {identity} "
            f"service's Ed25519 private key {DISABLE_HINT}"
        )
    return _minter(identity, settings.internal_auth_private_key_file)


def token_verifier(settings: CommonSettings, audiences: Iterable[str]) -> TokenVerifier:
    if settings.internal_auth_public_keys_dir is None:
        raise InternalAuthConfigError(
            "internal auth is required: set TAILOR_INTERNAL_AUTH_PUBLIC_KEYS_DIR to the directory of the "
            f"callers' public keys {DISABLE_HINT}"
        )
    return TokenVerifier.from_dir(settings.internal_auth_public_keys_dir, sorted(set(audiences)))


def check_internal_auth(settings: CommonSettings, *, signs: bool = True, verifies: bool = True) -> None:
    """At startup: refuses (SystemExit with the reason) when auth is required and the keys are missing."""
    if settings.internal_auth_disabled:
        return
    try:
        if signs:
            token_minter(settings)
        if verifies:
            token_verifier(settings, ())
    except InternalAuthConfigError as error:
        raise SystemExit(f"refusing to start: {error}") from None
