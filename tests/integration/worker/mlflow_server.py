"""A real MLflow tracking server on loopback for the mlflow integration's tests.

The server (the full ``mlflow`` package) does not belong in Tailor's .venv: it pins
``mlflow-skinny`` 3.17.2 where the worker's client is 3.18.0 (and numpy, graphql-core,
importlib-metadata differently), and brings pandas, scikit-learn, pyarrow and more that
Tailor never runs. It gets its own venv, ``.venv-mlflow-server/`` at the repository's root,
installed from the pinned ``requirements/mlflow-server.lock`` the first time a test needs it
(80-150 s) and kept while the lock's digest is unchanged; a file lock keeps two test runs
from building it at once. ``python -m tests.integration.worker.mlflow_server`` builds it
ahead (CI, a fresh checkout).

Each server stores runs in a SQLite file of its own directory and listens on a free port.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.support.processes import free_port

ROOT = Path(__file__).resolve().parents[3]
LOCK_FILE = ROOT / "requirements" / "mlflow-server.lock"
VENV = ROOT / ".venv-mlflow-server"
# The lock's digest the venv was installed from.
_INSTALLED_FROM = VENV / "installed-from.sha256"
INSTALL_TIMEOUT_S = 900.0
START_TIMEOUT_S = 180.0  # a cold start (imports, the store's migrations) takes 10-40 s on a busy machine


def server_venv() -> Path:
    """The server's venv, (re)built when absent or installed from another lock; returns its ``bin``."""
    digest = hashlib.sha256(LOCK_FILE.read_bytes()).hexdigest()
    guard = ROOT / ".venv-mlflow-server.building"
    with guard.open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another test run may be building it: wait for that one
        if _INSTALLED_FROM.exists() and _INSTALLED_FROM.read_text() == digest:
            return VENV / "bin"
        shutil.rmtree(VENV, ignore_errors=True)
        base_python = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base_python, "-m", "venv", str(VENV)], check=True, timeout=INSTALL_TIMEOUT_S)
        # Every package is pinned in the lock, so pip need not resolve anything.
        pip = [str(VENV / "bin" / "python"), "-m", "pip"]
        install = [*pip, "install", "--quiet", "--no-deps", "-r", str(LOCK_FILE)]
        subprocess.run(install, check=True, timeout=INSTALL_TIMEOUT_S)
        _INSTALLED_FROM.write_text(digest)
    return VENV / "bin"


@dataclass
class MlflowServer:
    """One running ``mlflow server``; :meth:`stop` ends it (and its workers) at once."""

    uri: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self) -> str:
        return self.log_path.read_text()[-4000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)  # its own session: the server and its workers
        self.process.wait(timeout=30)


def start_server(directory: Path) -> MlflowServer:
    """Starts a server storing under ``directory`` and waits until its /health answers."""
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = directory / "server.log"
    command = [
        str(server_venv() / "mlflow"), "server",
        "--backend-store-uri", f"sqlite:///{directory / 'mlflow.db'}",
        "--default-artifact-root", str(directory / "artifacts"),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    environment = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=environment, start_new_session=True
        )
    server = MlflowServer(f"http://127.0.0.1:{port}", process, log_path)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {process.returncode}:\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(f"{server.uri}/health", timeout=2) as response:
                if response.status == 200:
                    return server
        except OSError:
            pass
        time.sleep(0.25)  # polling /health, bounded by the deadline
    server.stop()
    raise TimeoutError(f"mlflow server did not answer /health in {START_TIMEOUT_S} s:\n{server.log_tail()}")


if __name__ == "__main__":
    started = time.monotonic()
    print(f"{server_venv()} ready in {time.monotonic() - started:.1f} s")
