"""An organization's W&B key reaches its own tracked jobs' workers, by their environment only, and
only those of jobs that report to W&B."""

from __future__ import annotations

from pathlib import Path

from services.trainer.config import TrainerSettings
from services.trainer.executors.local import local_worker_environment
from services.trainer.tracker_secrets import tracker_environment

KEY = "0123456789abcdef0123456789abcdef01234567"


def settings(tmp_path: Path, **values: object) -> TrainerSettings:
    keys = tmp_path / "keys"
    keys.mkdir(exist_ok=True)
    (keys / "org-a").write_text(f"  {KEY}\n")
    (tmp_path / "secret").write_text("not a key of any organization")
    return TrainerSettings(data_dir=tmp_path, trainer_wandb_keys_dir=keys, **values)


def test_an_organization_with_a_key_file_gets_its_key_and_the_server(tmp_path: Path) -> None:
    configured = settings(tmp_path, trainer_wandb_base_url="https://wandb.example.com")
    assert tracker_environment(configured, "org-a", trackers={"wandb"}, include_secrets=True) == {
        "WANDB_API_KEY": KEY,
        "WANDB_BASE_URL": "https://wandb.example.com",
    }


def test_no_key_file_no_keys_dir_or_a_manifest_means_no_key(tmp_path: Path) -> None:
    configured = settings(tmp_path)
    assert tracker_environment(configured, "org-b", trackers={"wandb"}, include_secrets=True) == {}
    # Kubernetes manifests
    assert tracker_environment(configured, "org-a", trackers={"wandb"}, include_secrets=False) == {}
    unconfigured = TrainerSettings(data_dir=tmp_path)
    assert tracker_environment(unconfigured, "org-a", trackers={"wandb"}, include_secrets=True) == {}


def test_an_organization_id_never_reaches_outside_the_keys_dir(tmp_path: Path) -> None:
    configured = settings(tmp_path)
    for crafted in ("../secret", "..", "org-a/../../secret", ""):
        assert tracker_environment(configured, crafted, trackers={"wandb"}, include_secrets=True) == {}


def test_a_local_worker_gets_the_schedulers_key_but_never_the_trainers_own() -> None:
    trainer_environment = {"PATH": "/usr/bin", "WANDB_API_KEY": "the trainer's", "WANDB_MODE": "online"}
    worker = local_worker_environment(trainer_environment, {"WANDB_API_KEY": KEY})
    assert worker == {"PATH": "/usr/bin", "WANDB_API_KEY": KEY}
    assert "WANDB_API_KEY" not in local_worker_environment(trainer_environment, {})


def test_a_job_gets_the_credentials_of_its_own_trackers_only(tmp_path: Path) -> None:
    mlflow = tmp_path / "mlflow"
    mlflow.mkdir()
    (mlflow / "org-a").write_text("token=mlflow-t0ken\n")
    configured = settings(
        tmp_path,
        trainer_wandb_base_url="https://wandb.example.com",
        trainer_mlflow_credentials_dir=mlflow,
        trainer_mlflow_allowed_targets=["mlflow.internal"],
    )
    wandb_only = tracker_environment(configured, "org-a", trackers={"wandb"}, include_secrets=True)
    mlflow_only = tracker_environment(configured, "org-a", trackers={"mlflow"}, include_secrets=True)
    both = tracker_environment(configured, "org-a", trackers={"wandb", "mlflow"}, include_secrets=True)
    assert wandb_only == {"WANDB_API_KEY": KEY, "WANDB_BASE_URL": "https://wandb.example.com"}
    assert mlflow_only == {"MLFLOW_TRACKING_TOKEN": "mlflow-t0ken"}
    assert both == {**wandb_only, **mlflow_only}
    assert tracker_environment(configured, "org-a", trackers=set(), include_secrets=True) == {}
