"""`make up`'s data and keys: a private data directory, API keys only in the gateway, never in a log line.

One ``make up``-style run with a configured key: a file is uploaded, a short job trained
(a worker process runs meanwhile) and its model asked once. Then

- the data directory is 0700 and nothing under it is readable by group or others
  (training files, adapters, databases, built models, the adapter cache, the services'
  private keys), public keys aside;
- of the launched processes (the four services and the running worker), only the
  gateway's environment holds the API keys, and the worker's holds neither them nor
  anything of the trainer's own (its database URL), nor any object store setting or secret
  (a worker moves its checkpoints through the trainer);
- no line the launcher and its children printed holds the key.
"""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path

import openai
import psutil
import pytest

from tests.e2e.jobs import TRAINING_TIMEOUT_S
from tests.support.local_stack import running_stack

pytestmark = pytest.mark.slow

KEY = "sk-at-rest-0123456789abcdef"
# Object store credentials the services are given (the filesystem store, with no endpoint,
# ignores them): a worker must never see them.
STORE_ACCESS_KEY = "store-access-at-rest-4e1f"
STORE_SECRET_KEY = "store-secret-at-rest-9b2c"
EXAMPLES = [
    {"messages": [{"role": "user", "content": f"Say {i}."}, {"role": "assistant", "content": f"{i}!"}]}
    for i in range(10)
]


def environ(process: psutil.Process) -> dict[str, str]:
    return process.environ()


def is_public_key(path: Path) -> bool:
    """make up's internal-auth public keys (internal-auth/public/*.pem), which it writes 0644 on purpose.

    They are public by nature, and unreachable anyway behind the 0700 data directory.
    """
    return (
        path.parent.name == "public"
        and path.parent.parent.name == "internal-auth"
        and path.is_file()
        and path.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    )


def service_of(process: psutil.Process) -> str:
    """``services.<name>`` from a process's command line (after die_with_parent's wrapper)."""
    command = process.cmdline()
    if "-m" in command and command.index("-m") + 1 < len(command):
        return command[command.index("-m") + 1]
    return " ".join(command)


def test_data_is_private_and_keys_stay_in_the_gateway(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with running_stack(
        data_dir,
        TAILOR_API_KEYS=f"{KEY}=org-a",
        TAILOR_OBJECT_STORE_ACCESS_KEY=STORE_ACCESS_KEY,
        TAILOR_OBJECT_STORE_SECRET_KEY=STORE_SECRET_KEY,
    ) as platform:
        client = openai.OpenAI(base_url=f"{platform.url}/v1", api_key=KEY)
        content = "\n".join(json.dumps(example) for example in EXAMPLES).encode()
        uploaded = client.files.create(file=("tiny.jsonl", content), purpose="fine-tune")
        assert client.files.wait_for_processing(uploaded.id, poll_interval=0.5).status == "processed"
        job = client.fine_tuning.jobs.create(
            model="tailor-tiny", training_file=uploaded.id, hyperparameters={"n_epochs": 1, "batch_size": 4}
        )

        services = {service_of(p): p for p in psutil.Process(platform.launcher.process.pid).children()}
        names = ("dataset", "trainer", "inference", "gateway")
        assert set(services) == {f"services.{name}" for name in names}
        environments = {name: environ(process) for name, process in services.items()}

        worker_environment: dict[str, str] | None = None
        deadline = time.monotonic() + TRAINING_TIMEOUT_S
        while job.status not in ("succeeded", "failed", "cancelled"):
            assert time.monotonic() < deadline, f"job still {job.status} after {TRAINING_TIMEOUT_S}s"
            if worker_environment is None:
                for process in services["services.trainer"].children(recursive=True):
                    try:
                        if service_of(process) == "services.trainer.worker":
                            worker_environment = environ(process)
                    except psutil.NoSuchProcess:
                        pass
            time.sleep(0.2)
            job = client.fine_tuning.jobs.retrieve(job.id)
        assert job.status == "succeeded", job.error
        # inference downloads the adapter into its cache
        answer = client.chat.completions.create(
            model=job.fine_tuned_model or "", messages=[{"role": "user", "content": "Say 1."}], max_tokens=2
        )
        assert answer.choices
        output = platform.launcher.drain()

    assert worker_environment is not None, "never saw the training worker running"
    assert worker_environment["TAILOR_WORKER_JOB_ID"] == job.id
    environments["services.trainer.worker"] = worker_environment
    for name, environment in environments.items():
        holding = [variable for variable, value in environment.items() if KEY in value]
        assert holding == (["TAILOR_API_KEYS"] if name == "services.gateway" else []), name
        if name != "services.gateway":
            assert "TAILOR_API_KEYS" not in environment, name
    assert "TAILOR_TRAINER_DATABASE_URL" not in worker_environment
    # the trainer holds the object store's credentials; the worker has no object store access
    # at all: no setting, and no credential under any name
    assert environments["services.trainer"]["TAILOR_OBJECT_STORE_SECRET_KEY"] == STORE_SECRET_KEY
    assert not [name for name in worker_environment if name.startswith("TAILOR_OBJECT_STORE_")]
    assert not [
        name
        for name, value in worker_environment.items()
        if STORE_SECRET_KEY in value or STORE_ACCESS_KEY in value
    ]
    # each service signs with its own internal-auth key; the worker holds none (a job token instead)
    assert "TAILOR_INTERNAL_AUTH_PRIVATE_KEY_FILE" not in worker_environment
    for name in ("dataset", "trainer", "inference", "gateway"):
        key_file = environments[f"services.{name}"]["TAILOR_INTERNAL_AUTH_PRIVATE_KEY_FILE"]
        assert Path(key_file).name == f"{name}.pem", name

    assert KEY not in output, [line for line in output.splitlines() if KEY in line]
    assert "API key  : the first entry of TAILOR_API_KEYS" in output

    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    open_to_others = [
        f"{path.relative_to(data_dir)} {stat.S_IMODE(path.lstat().st_mode):o}"
        for path in data_dir.rglob("*")
        if not path.is_symlink() and stat.S_IMODE(path.lstat().st_mode) & 0o077 and not is_public_key(path)
    ]
    assert not open_to_others
    # what the run wrote is there: the uploaded file, the adapter, the databases, the built model
    written = {path.relative_to(data_dir).parts[0] for path in data_dir.rglob("*") if path.is_file()}
    assert {"objects", "records", "models", "adapter-cache"} <= written, written
    assert any(path.name.endswith(".safetensors") for path in (data_dir / "objects").rglob("*"))
