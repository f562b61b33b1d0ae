"""Internal auth's pieces alone: keys on disk, token minting and caching, verification, rotation, policy."""

from __future__ import annotations

import stat
import time
from pathlib import Path

import pytest

from services.common.internal_auth import policy
from services.common.internal_auth.keys import (
    IDENTITIES,
    LocalKeySet,
    key_id,
    load_public_keys,
    write_key_pair,
)
from services.common.internal_auth.setup import check_internal_auth
from services.common.internal_auth.tokens import (
    InvalidToken,
    Principal,
    TokenMinter,
    TokenVerifier,
    mint_worker_token,
)
from services.common.settings import CommonSettings
from services.dataset.config import DatasetSettings


def test_the_local_key_set_is_private_and_kept_across_starts(tmp_path: Path) -> None:
    keys = LocalKeySet(tmp_path / "internal-auth").ensure()
    assert stat.S_IMODE(keys.root.stat().st_mode) == 0o700
    first = {identity: keys.private_key_file(identity).read_bytes() for identity in IDENTITIES}
    for identity in IDENTITIES:
        assert stat.S_IMODE(keys.private_key_file(identity).stat().st_mode) == 0o600
    assert sorted(load_public_keys(keys.public_dir)) == sorted(IDENTITIES)
    again = LocalKeySet(tmp_path / "internal-auth").ensure()
    assert {identity: again.private_key_file(identity).read_bytes() for identity in IDENTITIES} == first
    environment = keys.environment("trainer")
    assert environment["TAILOR_INTERNAL_AUTH_PRIVATE_KEY_FILE"].endswith("internal-auth/trainer.pem")
    assert environment["TAILOR_INTERNAL_AUTH_PUBLIC_KEYS_DIR"].endswith("internal-auth/public")


def key_set(tmp_path: Path) -> tuple[TokenMinter, TokenVerifier, Path]:
    key = write_key_pair(tmp_path / "gateway.pem", tmp_path / "public" / "gateway.pem")
    return (
        TokenMinter("gateway", key),
        TokenVerifier.from_dir(tmp_path / "public", ["dataset"]),
        tmp_path / "public",
    )


def test_a_token_is_reused_per_audience_and_organization_until_near_expiry(tmp_path: Path) -> None:
    now = [1_000_000.0]
    key = write_key_pair(tmp_path / "k.pem", tmp_path / "public" / "gateway.pem")
    minter = TokenMinter("gateway", key, clock=lambda: now[0])
    first = minter.token("dataset", "org-a")
    assert minter.token("dataset", "org-a") == first
    assert minter.token("dataset", "org-b") != first
    assert minter.token("trainer", "org-a") != first
    now[0] += 45  # within 20 s of the 60 s expiry: a fresh one
    assert minter.token("dataset", "org-a") != first


def test_verification_yields_the_organization_and_refuses_other_audiences(tmp_path: Path) -> None:
    minter, verifier, _ = key_set(tmp_path)
    assert verifier.verify(minter.token("dataset", "org-a")) == Principal("gateway", "org-a")
    with pytest.raises(InvalidToken, match="another service"):
        verifier.verify(minter.token("trainer", "org-a"))


def test_a_rotated_key_is_accepted_once_its_public_key_is_published(tmp_path: Path) -> None:
    now = [1_000_000.0]
    old = write_key_pair(tmp_path / "old.pem", tmp_path / "public" / "gateway.pem")
    verifier = TokenVerifier(
        load_public_keys(tmp_path / "public"), ["dataset"], keys_dir=tmp_path / "public", clock=lambda: now[0]
    )
    new = write_key_pair(tmp_path / "new.pem", tmp_path / "public" / "gateway-2027.pem")
    token = TokenMinter("gateway", new).token("dataset", None)
    # Published, and looked for again once the rescan interval passed: both keys verify.
    now[0] += 11
    assert verifier.verify(token).issuer == "gateway"
    assert verifier.verify(TokenMinter("gateway", old).token("dataset", None)).issuer == "gateway"
    assert key_id(new.public_key()) != key_id(old.public_key())


def test_a_worker_token_must_come_from_the_trainer(tmp_path: Path) -> None:
    key = write_key_pair(tmp_path / "k.pem", tmp_path / "public" / "trainer.pem")
    (tmp_path / "public" / "gateway.pem").write_bytes((tmp_path / "public" / "trainer.pem").read_bytes())
    verifier = TokenVerifier.from_dir(tmp_path / "public", ["trainer", "dataset"])
    token = mint_worker_token(
        key, organization="o", job_id="j", attempt_id="a", files=["f", ""], expires_at=2**32
    )
    principal = verifier.verify(token)
    assert principal == Principal(
        "trainer", "o", worker=True, job_id="j", attempt_id="a", files=frozenset({"f"})
    )


def test_the_policy_table() -> None:
    gateway, trainer, inference, dataset = (
        Principal(name, "o") for name in ("gateway", "trainer", "inference", "dataset")
    )
    worker = Principal("trainer", "o", worker=True, job_id="j", attempt_id="a", files=frozenset({"f"}))
    allowed = [
        (gateway, "/tailor.dataset.v1.DatasetService/DownloadFile"),
        (gateway, "/tailor.trainer.v1.TrainerService/ListJobs"),
        (gateway, "/tailor.trainer.v1.ModelRegistryService/ResolveModel"),
        (gateway, "/tailor.inference.v1.InferenceService/GenerateCompletion"),
        (trainer, "/tailor.dataset.v1.DatasetService/GetFile"),
        (inference, "/tailor.trainer.v1.ModelRegistryService/ResolveModel"),
        (dataset, "/tailor.inference.v1.InferenceService/GetReplicaInfo"),
        (worker, "/tailor.trainer.v1.WorkerService/ClaimJob"),
        (worker, "/tailor.dataset.v1.DatasetService/DownloadFile"),
        (worker, "/tailor.dataset.v1.DatasetService/UploadFile"),
    ]
    denied = [
        (gateway, "/tailor.trainer.v1.WorkerService/ClaimJob"),
        (trainer, "/tailor.trainer.v1.WorkerService/ClaimJob"),
        (trainer, "/tailor.inference.v1.InferenceService/LoadAdapter"),
        (inference, "/tailor.trainer.v1.TrainerService/ListJobs"),
        (inference, "/tailor.dataset.v1.DatasetService/DownloadFile"),
        (dataset, "/tailor.trainer.v1.ModelRegistryService/ResolveModel"),
        (worker, "/tailor.dataset.v1.DatasetService/ListFiles"),
        (worker, "/tailor.trainer.v1.TrainerService/GetJob"),
        (worker, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"),
    ]
    for principal, method in allowed:
        policy.authorize(principal, method)
    for principal, method in denied:
        with pytest.raises(policy.Refused):
            policy.authorize(principal, method)
    assert policy.is_anonymous("/grpc.health.v1.Health/Check")
    assert not policy.is_anonymous("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo")


def test_a_service_without_its_keys_refuses_to_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PRIVATE_KEY_FILE", "PUBLIC_KEYS_DIR", "IDENTITY"):
        monkeypatch.delenv(f"TAILOR_INTERNAL_AUTH_{name}", raising=False)
    with pytest.raises(SystemExit, match="TAILOR_INTERNAL_AUTH_PUBLIC_KEYS_DIR"):
        check_internal_auth(DatasetSettings(data_dir=tmp_path), signs=False)
    with pytest.raises(SystemExit, match="TAILOR_INTERNAL_AUTH_PRIVATE_KEY_FILE"):
        check_internal_auth(DatasetSettings(data_dir=tmp_path, internal_auth_public_keys_dir=tmp_path))
    check_internal_auth(CommonSettings(data_dir=tmp_path, internal_auth_disabled=True))
    assert DatasetSettings(data_dir=tmp_path).internal_auth_issuer == "dataset"


def test_a_verified_token_is_remembered_only_until_it_expires(tmp_path: Path) -> None:
    start = time.time()
    now = [start]
    key = write_key_pair(tmp_path / "k.pem", tmp_path / "public" / "gateway.pem")
    verifier = TokenVerifier(load_public_keys(tmp_path / "public"), ["dataset"], clock=lambda: now[0])
    token = TokenMinter("gateway", key, clock=lambda: now[0]).token("dataset", "org-a")
    assert verifier.verify(token).organization == "org-a"
    _, until = verifier._verified[token]
    assert until <= int(start) + 60 + 5  # its exp, plus the clock leeway
    now[0] += 30
    assert verifier.verify(token).organization == "org-a"
    assert verifier._verified[token][1] == until  # answered from memory
    now[0] = until + 1  # past it: checked again (here pyjwt, on the real clock, still accepts it)
    verifier.verify(token)
    assert verifier._verified[token][1] > until
