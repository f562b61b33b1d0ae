"""``make demo`` against the running platform: every step printed, the job succeeds, the chat answers."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.e2e.conftest import KEY_A, Stack

pytestmark = pytest.mark.slow


def test_the_demo_runs_every_step(stack: Stack) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "services.gateway.demo",
            "--base-url",
            f"{stack.url}/v1",
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
