"""What a worker is started with: its command line and environment."""

from __future__ import annotations

import sys
from pathlib import Path

from pydantic import SecretStr

from services.common.base_models import BaseModelSpec
from services.common.die_with_parent import dying_with
from services.common.settings import CommonSettings
from services.trainer.config import TrainerSettings
from services.trainer.executors import WorkerLaunch, worker_environment
from services.trainer.executors.local import local_command, local_worker_environment

LAUNCH = WorkerLaunch(job_id="ftjob-1", attempt_id="attempt-1", organization_id="org-a")


def test_python_means_the_trainers_own_interpreter() -> None:
    assert local_command("python -m services.trainer.worker --x 'a b'") == [
        sys.executable, "-m", "services.trainer.worker", "--x", "a b",
    ]  # fmt: skip
    assert local_command("sh -c true")[0].endswith("/sh")


def test_workers_are_wrapped_to_die_with_the_trainer() -> None:
    wrapped = dying_with(1234, ["/usr/bin/worker", "--flag"])
    assert wrapped[-3:] == ["1234", "/usr/bin/worker", "--flag"]
    assert Path(wrapped[2]).name == "die_with_parent.py"


def test_the_environment_carries_the_trainers_settings_to_the_worker(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    settings = TrainerSettings(
        data_dir=tmp_path,
        object_store_secret_key=SecretStr("s3cret"),
        grpc_reflection=False,
        base_models={"tiny": BaseModelSpec(source="builtin:tailor-tiny", lora_rank=8, max_seq_length=256)},
    )
    environment = worker_environment(settings, LAUNCH, trainer_addr="127.0.0.1:9", include_secrets=True)
    assert environment["TAILOR_WORKER_JOB_ID"] == "ftjob-1"
    assert environment["TAILOR_WORKER_ATTEMPT_ID"] == "attempt-1"
    assert environment["TAILOR_WORKER_ORGANIZATION"] == "org-a"
    assert environment["TAILOR_TRAINER_ADDR"] == "127.0.0.1:9"

    # Read back the way a worker reads its settings, they are the trainer's.
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    seen = CommonSettings()
    assert seen.data_dir == tmp_path
    # ... except the object store's: a worker has no object store access at all.
    assert seen.object_store_secret_key.get_secret_value() == ""
    assert not [name for name in environment if name.startswith("TAILOR_OBJECT_STORE_")]
    assert seen.grpc_reflection is False
    assert seen.base_models == settings.base_models

    without_secrets = worker_environment(settings, LAUNCH, trainer_addr="x:1", include_secrets=False)
    assert "TAILOR_OBJECT_STORE_SECRET_KEY" not in without_secrets


def test_a_local_worker_inherits_only_the_allowed_part_of_the_trainers_environment() -> None:
    trainer = {
        "PATH": "/venv/bin:/usr/bin",
        "HOME": "/home/tailor",
        "PYTHONPATH": "/src",
        "HF_HOME": "/hub",
        "CUDA_VISIBLE_DEVICES": "0",
        "TAILOR_WORKER_DEVICE": "cpu",  # a worker knob set on the trainer
        "TAILOR_API_KEYS": "sk-secret=org-a",
        "TAILOR_GATEWAY_API_KEYS_FILE": "/keys",
        "TAILOR_TRAINER_DATABASE_URL": "postgresql://tailor:pw@db/tailor",
        "TAILOR_OBJECT_STORE_SECRET_KEY": "from-the-trainers-environment",
        "AWS_SECRET_ACCESS_KEY": "aws",
        "SOME_TOKEN": "t",
    }
    job = {"TAILOR_WORKER_JOB_ID": "ftjob-1", "TAILOR_OBJECT_STORE_SECRET_KEY": "from-the-scheduler"}
    environment = local_worker_environment(trainer, job)
    assert environment == {
        "PATH": "/venv/bin:/usr/bin",
        "HOME": "/home/tailor",
        "PYTHONPATH": "/src",
        "HF_HOME": "/hub",
        "CUDA_VISIBLE_DEVICES": "0",
        "TAILOR_WORKER_DEVICE": "cpu",
        "TAILOR_WORKER_JOB_ID": "ftjob-1",
    }
