"""An inference replica whose base model is a Hugging Face id missing from the offline cache does not start."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support import internal_auth

REPO_ROOT = Path(__file__).resolve().parents[3]


def test_the_replica_exits_at_start_up_naming_the_id_and_the_cache(tmp_path: Path) -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("TAILOR_", "HF_"))}
    environment.update(
        HF_HOME=str(tmp_path / "hf-home"),
        HF_HUB_OFFLINE="1",
        TAILOR_DATA_DIR=str(tmp_path / "data"),
        TAILOR_BASE_MODELS=json.dumps({"qwen": {"source": "Qwen/Qwen2.5-0.5B-Instruct"}}),
        TAILOR_INFERENCE_BASE_MODEL="qwen",
        TAILOR_INFERENCE_ENGINE="hf",
        TAILOR_INFERENCE_LISTEN="127.0.0.1:0",
        # a replica signs its registry calls: without its key it would refuse to start first
        **internal_auth.test_keys().environment("inference"),
    )
    started = subprocess.run(
        [sys.executable, "-m", "services.inference"],
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert started.returncode == 1
    last_line = started.stderr.strip().splitlines()[-1]
    assert last_line.startswith("inference: Cannot serve base model `qwen`: `Qwen/Qwen2.5-0.5B-Instruct`")
    assert "HF_HUB_OFFLINE=1" in last_line and str(tmp_path / "hf-home") in last_line
    assert "Traceback" not in started.stderr
