"""An organization's MLflow credentials reach its own tracked jobs' workers, by their environment only,
and only where the deployment limits the tracking servers users may name."""

from __future__ import annotations

from pathlib import Path

from services.trainer.config import TrainerSettings
from services.trainer.tracker_secrets import tracker_environment

ALLOWED = ["mlflow.internal"]


def settings(tmp_path: Path, **values: object) -> TrainerSettings:
    credentials = tmp_path / "mlflow"
    credentials.mkdir(exist_ok=True)
    (credentials / "org-token").write_text("token = t0ken\n")
    (credentials / "org-basic").write_text("username=ci\npassword=p=ss word\n\n")
    (credentials / "org-odd").write_text("t0ken-without-a-name\n")
    (tmp_path / "secret").write_text("token=not any organization's\n")
    return TrainerSettings(data_dir=tmp_path, trainer_mlflow_credentials_dir=credentials, **values)


def mlflow_environment(
    configured: TrainerSettings, organization: str, *, include_secrets: bool = True
) -> dict[str, str]:
    """What the worker of ``organization``'s job with an MLflow integration gets."""
    return tracker_environment(configured, organization, trackers={"mlflow"}, include_secrets=include_secrets)


def test_a_token_or_a_username_and_password_become_mlflows_variables(tmp_path: Path) -> None:
    configured = settings(tmp_path, trainer_mlflow_allowed_targets=ALLOWED)
    assert mlflow_environment(configured, "org-token") == {"MLFLOW_TRACKING_TOKEN": "t0ken"}
    assert mlflow_environment(configured, "org-basic") == {
        "MLFLOW_TRACKING_USERNAME": "ci",
        "MLFLOW_TRACKING_PASSWORD": "p=ss word",
    }
    assert mlflow_environment(configured, "org-odd") == {}  # no name: not guessed


def test_without_an_allow_list_manifests_or_a_file_no_credentials_are_handed_out(tmp_path: Path) -> None:
    # any user could name their own server and receive the organization's credentials
    assert mlflow_environment(settings(tmp_path), "org-token") == {}
    configured = settings(tmp_path, trainer_mlflow_allowed_targets=ALLOWED)
    assert mlflow_environment(configured, "org-token", include_secrets=False) == {}  # Kubernetes manifests
    assert mlflow_environment(configured, "org-none") == {}
    for crafted in ("../secret", "..", ""):
        assert mlflow_environment(configured, crafted) == {}
