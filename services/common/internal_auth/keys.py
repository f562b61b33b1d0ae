"""Ed25519 key pairs of the service identities: generate, write (0600/0644), load; ``kid`` = fingerprint."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

# The issuers: every service that calls another. A worker's token is issued by the trainer.
IDENTITIES = ("gateway", "trainer", "dataset", "inference")


class InternalAuthConfigError(Exception):
    """The keys needed for internal authentication are missing or unreadable."""


def key_id(public_key: Ed25519PublicKey) -> str:
    """The key's fingerprint: the first 16 hex digits of the SHA-256 of its raw public bytes."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def generate_key_pair() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def private_pem(private_key: Ed25519PrivateKey) -> bytes:
    return private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def public_pem(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def write_key_pair(
    private_key_file: Path, public_key_file: Path, private_key: Ed25519PrivateKey | None = None
) -> Ed25519PrivateKey:
    """Writes a (new) key pair: the private key 0600 (created so, never readable by others), the public 0644."""
    key = private_key or generate_key_pair()
    private_key_file.parent.mkdir(parents=True, exist_ok=True)
    public_key_file.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(private_key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(private_pem(key))
    os.chmod(private_key_file, 0o600)
    public_key_file.write_bytes(public_pem(key.public_key()))
    os.chmod(public_key_file, 0o644)
    return key


def load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError) as error:
        raise InternalAuthConfigError(f"cannot read the internal auth private key {path}: {error}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise InternalAuthConfigError(f"the internal auth private key {path} is not an Ed25519 key")
    return key


def issuer_of(path: Path) -> str | None:
    """The issuer a public key file belongs to: the identity its name starts with (``trainer-2027.pem``)."""
    for identity in IDENTITIES:
        if path.stem.startswith(identity):
            return identity
    return None


def load_public_keys(directory: Path) -> dict[str, dict[str, Ed25519PublicKey]]:
    """issuer -> {kid: key} from the ``<issuer>*.pem`` files of ``directory`` (others are ignored)."""
    if not directory.is_dir():
        raise InternalAuthConfigError(f"the internal auth public keys directory {directory} does not exist")
    keys: dict[str, dict[str, Ed25519PublicKey]] = {}
    for path in sorted(directory.glob("*.pem")):
        issuer = issuer_of(path)
        if issuer is None:
            continue
        try:
            key = serialization.load_pem_public_key(path.read_bytes())
        except (OSError, ValueError) as error:
            raise InternalAuthConfigError(
                f"cannot read the internal auth public key {path}: {error}"
            ) from None
        if not isinstance(key, Ed25519PublicKey):
            raise InternalAuthConfigError(f"the internal auth public key {path} is not an Ed25519 key")
        keys.setdefault(issuer, {})[key_id(key)] = key
    return keys


class LocalKeySet:
    """The key pairs ``make up`` keeps under ``<data_dir>/internal-auth/``.

    ``<root>/<identity>.pem``: each service's private key (0600, the directory 0700);
    ``<root>/public/<identity>.pem``: the public keys every service verifies with.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.public_dir = root / "public"

    def private_key_file(self, identity: str) -> Path:
        return self.root / f"{identity}.pem"

    def ensure(self) -> LocalKeySet:
        """Creates the missing key pairs (first start), keeps the existing ones."""
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        self.public_dir.mkdir(exist_ok=True)
        for identity in IDENTITIES:
            private_file = self.private_key_file(identity)
            public_file = self.public_dir / f"{identity}.pem"
            if private_file.exists():
                key = load_private_key(private_file)
                os.chmod(private_file, 0o600)
                if not public_file.exists():
                    write_key_pair(private_file, public_file, key)
            else:
                write_key_pair(private_file, public_file)
        return self

    def environment(self, identity: str) -> dict[str, str]:
        """The settings of the service ``identity``: its own private key, everyone's public keys."""
        return {
            "TAILOR_INTERNAL_AUTH_IDENTITY": identity,
            "TAILOR_INTERNAL_AUTH_PRIVATE_KEY_FILE": str(self.private_key_file(identity)),
            "TAILOR_INTERNAL_AUTH_PUBLIC_KEYS_DIR": str(self.public_dir),
        }
