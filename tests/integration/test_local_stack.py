"""`make up`'s launcher: all four services come up on loopback, answer health, come back after a
crash, and stop cleanly.

The launcher runs as a real subprocess on free ports and a fresh data directory, as a
user would start it; the test reads what it prints and asks each service directly.
"""

from __future__ import annotations

import signal
import socket
import stat
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import psutil
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.local_stack import assert_served_by_vllm, stack_environment
from tests.support.processes import OutputWatchedProcess

STARTUP_TIMEOUT_S = 240


class Launcher(OutputWatchedProcess):
    """``python -m services.local_stack`` on free ports and a fresh data directory."""

    def __init__(self, data_dir: Path, ports: dict[str, int] | None = None, **settings: str) -> None:
        fixed = {f"TAILOR_{name.upper()}_ADDR": f"127.0.0.1:{port}" for name, port in (ports or {}).items()}
        env = stack_environment(data_dir, **fixed, **settings)
        self.ports = {"gateway": int(env["TAILOR_GATEWAY_PORT"])}
        for name in ("dataset", "trainer", "inference"):
            self.ports[name] = int(env[f"TAILOR_{name.upper()}_ADDR"].rsplit(":", 1)[1])
        super().__init__([sys.executable, "-m", "services.local_stack"], env)

    def children(self) -> list[psutil.Process]:
        # the four services; their own helpers (e.g. multiprocessing trackers) are not counted
        return psutil.Process(self.process.pid).children(recursive=False)


@pytest.fixture
def launcher(tmp_path: Path) -> Iterator[Launcher]:
    started = Launcher(tmp_path / "data")
    yield started
    if started.process.poll() is None:
        started.process.kill()
        started.process.wait()


def grpc_health(port: int) -> int:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        response = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    return response.status


def wait_gone(processes: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    _, alive = psutil.wait_procs(processes, timeout=timeout)
    return [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]


def test_make_up_serves_all_four_and_stops_them_on_sigterm(launcher: Launcher, tmp_path: Path) -> None:
    launcher.wait_for("all services are up", STARTUP_TIMEOUT_S)
    url_line = launcher.wait_for("base URL", 10)
    key_line = launcher.wait_for("API key", 10)
    gateway = launcher.ports["gateway"]
    assert url_line.split()[-1] == f"http://127.0.0.1:{gateway}/v1"

    # the generated key is stored privately in the data directory; the banner says where,
    # and never prints the key itself
    key_file = tmp_path / "data" / "local_api_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700
    key, _, organization = key_file.read_text().strip().partition("=")
    assert organization == "local"
    assert key_line.split()[-1] == str(key_file)
    export_line = launcher.wait_for("export OPENAI_API_KEY", 10)
    assert export_line.split("=", 1)[1].strip() == f"$(cut -d= -f1 {key_file})"

    for name in ("dataset", "trainer", "inference"):
        assert grpc_health(launcher.ports[name]) == health_pb2.HealthCheckResponse.SERVING, name
    assert httpx.get(f"http://127.0.0.1:{gateway}/healthz").status_code == 200
    ready = httpx.get(f"http://127.0.0.1:{gateway}/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["upstreams"] == {"dataset": "SERVING", "trainer": "SERVING", "inference": "SERVING"}

    children = launcher.children()
    assert len(children) == 4
    launcher.process.send_signal(signal.SIGTERM)
    assert launcher.process.wait(timeout=60) == 0, launcher.drain()
    assert not wait_gone(children, timeout=5), "services left running after the launcher stopped"
    output = launcher.drain()
    assert "stopped" in output
    assert key not in output
    assert "Traceback" not in output, output


def test_make_up_on_vllm_stops_on_sigterm_without_a_traceback(tmp_path: Path) -> None:
    # vLLM's engine shuts down once more when it is collected; left to the interpreter's
    # exit, that printed a TypeError traceback on every stop.
    launcher = Launcher(
        tmp_path / "data", TAILOR_INFERENCE_ENGINE="vllm", TAILOR_INFERENCE_VLLM_CPU_THREADS="1"
    )
    try:
        launcher.wait_for("all services are up", STARTUP_TIMEOUT_S)
        assert_served_by_vllm(launcher.output)
        launcher.process.send_signal(signal.SIGTERM)
        assert launcher.process.wait(timeout=90) == 0, launcher.drain()
        output = launcher.drain()
        assert "stopped" in output
        assert "Traceback" not in output and "Exception ignored" not in output, output
    finally:
        if launcher.process.poll() is None:
            launcher.process.kill()
            launcher.process.wait()


def test_a_crashed_service_is_restarted_and_all_die_with_a_killed_launcher(
    launcher: Launcher, tmp_path: Path
) -> None:
    # One stack for both: its start-up is most of the time, and the restarted service must
    # die with the launcher too.
    launcher.wait_for("all services are up", STARTUP_TIMEOUT_S)
    gateway = f"http://127.0.0.1:{launcher.ports['gateway']}"
    key = (tmp_path / "data" / "local_api_key").read_text().strip().partition("=")[0]
    files = httpx.Client(base_url=gateway, headers={"Authorization": f"Bearer {key}"}, timeout=10)
    assert files.get("/v1/files").status_code == 200

    (dataset,) = [child for child in launcher.children() if "services.dataset" in " ".join(child.cmdline())]
    dataset.kill()  # SIGKILL: no chance to say goodbye
    launcher.wait_for("dataset exited unexpectedly with signal SIGKILL; restarting it in 1s", 30)
    launcher.wait_for(f"dataset is up again (127.0.0.1:{launcher.ports['dataset']})", STARTUP_TIMEOUT_S)

    # The gateway's channel to the dataset service reconnects by itself.
    deadline = time.monotonic() + 30
    while (listed := files.get("/v1/files")).status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert listed.status_code == 200, listed.text
    assert listed.json()["object"] == "list"
    assert launcher.process.poll() is None, "the rest of the stack kept running"
    children = launcher.children()
    assert len(children) == 4 and dataset.pid not in {child.pid for child in children}

    launcher.process.kill()  # no chance to clean up: the kernel's parent-death signal must do it
    launcher.process.wait()
    assert not wait_gone(children, timeout=30), "orphaned services after SIGKILL of the launcher"


def test_a_service_that_cannot_start_stops_the_stack(tmp_path: Path) -> None:
    # The dataset's port is taken, so it cannot bind: the launcher must say which service
    # failed, stop the others and exit non-zero instead of hanging.
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        started = Launcher(tmp_path / "data", ports={"dataset": blocker.getsockname()[1]})
        try:
            started.wait_for("dataset exited with code", STARTUP_TIMEOUT_S)
            assert started.process.wait(timeout=60) == 1
        finally:
            if started.process.poll() is None:
                started.process.kill()
    leftovers = [p for p in psutil.process_iter(["cmdline"]) if _is_stack_child(p, tmp_path)]
    assert not wait_gone(leftovers, timeout=10)


def _is_stack_child(process: psutil.Process, tmp_path: Path) -> bool:
    try:
        return "services." in " ".join(process.info["cmdline"] or []) and str(tmp_path) in str(
            process.environ().get("TAILOR_DATA_DIR", "")
        )
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
