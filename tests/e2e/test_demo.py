"""``make demo`` against the running platform: every step printed, the job succeeds, the chat answers.

The demo is the whole SDK flow in one run (upload, fine-tune, events, checkpoints, chat,
models), so it is the one e2e test run on both records databases: on the session's stack
(SQLite under its data directory, as ``make up`` does by default) and on a stack started
the same way with ``TAILOR_DATASET_DATABASE_URL`` and ``TAILOR_TRAINER_DATABASE_URL``
naming one fresh Postgres database, as production is configured. The Postgres run also
checks the records really are there, and no SQLite file was written instead.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import DATABASES
from tests.e2e.conftest import KEY_A, Stack
from tests.support.local_stack import running_stack

pytestmark = pytest.mark.slow


@dataclass
class DemoTarget:
    """Where the demo runs: a gateway URL, and for Postgres the records database and the data directory."""

    url: str
    postgres_url: str = ""
    data_dir: Path | None = None


@pytest.fixture(params=DATABASES)
def target(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoTarget]:
    if request.param == "sqlite":
        stack: Stack = request.getfixturevalue("stack")
        yield DemoTarget(stack.url)
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
        yield DemoTarget(platform.url, postgres_url, data_dir)


def test_the_demo_runs_every_step(target: DemoTarget) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "services.gateway.demo",
            "--base-url",
            f"{target.url}/v1",
            "--api-key",
            KEY_A,
            "--epochs",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=420,
    )
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
