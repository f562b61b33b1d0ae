"""``make demo`` against the running platform: every step printed, the job succeeds, the chat answers.

The demo is the whole SDK flow in one run (upload, fine-tune, events, checkpoints, chat,
models), so it is the one e2e test run on both records databases: on the session's stack
(SQLite under its data directory, as ``make up`` does by default) and on a stack started
the same way with ``TAILOR_DATASET_DATABASE_URL`` and ``TAILOR_TRAINER_DATABASE_URL``
naming one fresh Postgres database, as production is configured. The Postgres run also
checks the records really are there, and no SQLite file was written instead.

Each run finds the gateway and its key a different way, as users configure them: the
SQLite run with nothing but the ``TAILOR_*`` settings ``make up`` was started with (its
port and ``TAILOR_API_KEYS``), the Postgres run with the SDK's ``OPENAI_BASE_URL`` /
``OPENAI_API_KEY``. Three short runs check what a user reads when the key cannot be found
or is refused, and that the local stack's key never goes to another gateway.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest

from tests.conftest import DATABASES
from tests.e2e.conftest import KEY_A, Stack
from tests.support.local_stack import running_stack

pytestmark = pytest.mark.slow


@dataclass
class DemoTarget:
    """Where the demo runs: how it finds the gateway, and for Postgres the database and data directory."""

    settings: dict[str, str]  # the demo's environment: how it finds the gateway and its key
    postgres_url: str = ""
    data_dir: Path | None = None


def run_demo(settings: dict[str, str], *args: str, timeout: float = 420) -> subprocess.CompletedProcess[str]:
    """``make demo``'s command with ``settings`` over an environment free of TAILOR_* and OPENAI_* ones."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("TAILOR_", "OPENAI_"))}
    return subprocess.run(
        [sys.executable, "-m", "services.gateway.demo", *args],
        env={**environment, **settings},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def make_up_settings(url: str, api_keys: str, data_dir: Path) -> dict[str, str]:
    """The settings of a terminal where ``make up`` was configured: the gateway's port and the keys."""
    return {
        "TAILOR_GATEWAY_PORT": str(urlsplit(url).port),
        "TAILOR_API_KEYS": api_keys,
        "TAILOR_DATA_DIR": str(data_dir),
    }


@pytest.fixture(params=DATABASES)
def target(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoTarget]:
    if request.param == "sqlite":
        stack: Stack = request.getfixturevalue("stack")
        # No key file in this data directory: the key can only come from TAILOR_API_KEYS.
        empty_data_dir = tmp_path_factory.mktemp("demo-data")
        yield DemoTarget(make_up_settings(stack.url, f"{KEY_A}=org-a", empty_data_dir))
        return
    postgres_url: str = request.getfixturevalue("postgres_url")
    data_dir = tmp_path_factory.mktemp("e2e-postgres") / "data"
    with running_stack(
        data_dir,
        TAILOR_API_KEYS=f"{KEY_A}=org-a",
        # One database for both services, as in the README's example.
        TAILOR_DATASET_DATABASE_URL=postgres_url,
        TAILOR_TRAINER_DATABASE_URL=postgres_url,
    ) as platform:
        sdk_settings = {"OPENAI_BASE_URL": f"{platform.url}/v1", "OPENAI_API_KEY": KEY_A}
        yield DemoTarget(sdk_settings, postgres_url, data_dir)


def test_the_demo_runs_every_step(target: DemoTarget) -> None:
    result = run_demo(target.settings, "--epochs", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    output = result.stdout
    for heading in (
        "Uploading demo_train.jsonl",
        "Fine-tuning tailor-tiny",
        "Following the job's events",
        "Checkpoints",
        "Chatting with ft:tailor-tiny:org-a:demo-pirate:",
        "Your models",
    ):
        assert f"==> {heading}" in output, output
    assert "The job has successfully completed" in output
    assert "tokens)" in output

    if target.postgres_url:
        counts = asyncio.run(row_counts(target.postgres_url))
        assert counts["succeeded jobs"] == 1, counts
        assert counts["files"] >= 2 and counts["models"] >= 1 and counts["events"] > 0, counts
        assert target.data_dir is not None
        assert list(target.data_dir.glob("records/*.db")) == [], "records went to SQLite, not Postgres"


def test_without_a_key_the_demo_says_what_to_set(tmp_path: Path) -> None:
    result = run_demo({"TAILOR_DATA_DIR": str(tmp_path)})

    assert result.returncode == 1
    assert "no API key found" in result.stderr
    assert "export OPENAI_API_KEY=" in result.stderr
    # where `make up` would have put the key it generates
    assert str((tmp_path / "local_api_key").resolve()) in result.stderr
    assert "==>" not in result.stdout  # nothing was attempted


def test_the_local_key_is_not_sent_to_another_gateway(tmp_path: Path) -> None:
    (tmp_path / "local_api_key").write_text("sk-tailor-local-only-0000=local\n")

    result = run_demo({"TAILOR_DATA_DIR": str(tmp_path), "OPENAI_BASE_URL": "http://192.0.2.1:9/v1"})

    assert result.returncode == 1
    assert "no API key found" in result.stderr and "export OPENAI_API_KEY=" in result.stderr
    assert "==>" not in result.stdout


def test_a_refused_key_is_named_with_where_it_came_from(stack: Stack, tmp_path: Path) -> None:
    # a key file left by an earlier `make up`, while this one runs with TAILOR_API_KEYS
    (tmp_path / "local_api_key").write_text("sk-tailor-left-over-0000=local\n")
    settings = make_up_settings(stack.url, "", tmp_path)

    result = run_demo(settings, timeout=60)

    assert result.returncode == 1
    assert f"refused the API key from {(tmp_path / 'local_api_key').resolve()}" in result.stderr
    assert "export OPENAI_API_KEY=" in result.stderr
    assert "==>" not in result.stdout


async def row_counts(database_url: str) -> dict[str, int]:
    """What the platform stored in the Postgres database (the demo's training and result files, its job...)."""
    connection = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        queries = {
            "files": "SELECT count(*) FROM files",
            "succeeded jobs": "SELECT count(*) FROM jobs WHERE status = 'JOB_STATUS_SUCCEEDED'",
            "events": "SELECT count(*) FROM events",
            "models": "SELECT count(*) FROM models",
        }
        return {name: await connection.fetchval(query) for name, query in queries.items()}
    finally:
        await connection.close()
