"""The committed dashboard assets (services/gateway/ui_static/) are what ui/ builds today.

They are committed so that ``make up`` needs no Node.js; this test installs ui/'s locked
dependencies into a temporary copy, builds it there, and compares byte for byte, so a change
to ui/src that was not followed by ``make ui`` fails here.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from services.gateway.ui import STATIC_DIR

pytestmark = pytest.mark.slow

UI_SOURCE = Path(__file__).parents[3] / "ui"


def _files(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes() for path in root.rglob("*") if path.is_file()}


def test_the_committed_assets_are_a_fresh_build_of_ui(tmp_path: Path) -> None:
    npm = shutil.which("npm")
    assert npm, "the dashboard is built with Node.js 20 and npm (apt-get install nodejs npm)"
    source = tmp_path / "ui"
    shutil.copytree(UI_SOURCE, source, ignore=shutil.ignore_patterns("node_modules"))
    built = tmp_path / "built"
    for command in (
        [npm, "ci", "--prefer-offline", "--no-audit", "--no-fund"],
        [npm, "run", "build", "--", "--outdir", str(built)],
    ):
        finished = subprocess.run(command, cwd=source, capture_output=True, text=True, timeout=300)
        assert finished.returncode == 0, f"{' '.join(command)} failed:\n{finished.stdout}\n{finished.stderr}"
    fresh, committed = _files(built), _files(STATIC_DIR)
    assert sorted(fresh) == sorted(committed), "run `make ui` and commit services/gateway/ui_static/"
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"{stale} differ from a fresh build of ui/: run `make ui` and commit them"
