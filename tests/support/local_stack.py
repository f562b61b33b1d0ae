"""``python -m services.local_stack`` (what ``make up`` runs) as a test subprocess on free ports.

Every end-to-end test starts the platform the same way: a fresh data directory, free
loopback ports for the four services, no ``TAILOR_*`` variable inherited from the
environment that runs the tests, and whatever settings the test adds (API keys, an S3
store, Postgres URLs, the vLLM engine).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from services.common.internal_auth.keys import LocalKeySet, load_private_key
from services.common.internal_auth.tokens import TokenMinter
from services.local_stack import INTERNAL_AUTH_DIR
from tests.support.processes import OutputWatchedProcess, free_port

SERVICES = ("dataset", "trainer", "inference", "gateway")
STARTUP_TIMEOUT_S = 300


@dataclass
class RunningStack:
    """The launched platform: its gateway's URL, the launcher's output and the environment it got."""

    url: str
    launcher: OutputWatchedProcess
    environment: dict[str, str]

    @property
    def keys(self) -> LocalKeySet:
        """The internal-auth key pairs the launcher made under its data directory."""
        return LocalKeySet(Path(self.environment["TAILOR_DATA_DIR"]) / INTERNAL_AUTH_DIR)

    def service_environment(self, identity: str) -> dict[str, str]:
        """What a further process of ``identity`` (a second gateway) needs: the stack's, plus its key."""
        return {**self.environment, **self.keys.environment(identity)}

    def metadata(self, audience: str, organization: str | None = None, *, issuer: str = "gateway") -> tuple[tuple[str, str], ...]:
        """Call metadata with a token ``issuer`` signs with its key, for calling a service directly."""
        key = load_private_key(self.keys.private_key_file(issuer))
        token = TokenMinter(issuer, key).token(audience, organization)
        return (("authorization", f"Bearer {token}"),)


def stack_environment(data_dir: Path, *, inference_replicas: int = 1, **settings: str) -> dict[str, str]:
    """The launcher's environment: this process's, less any TAILOR_* variable, plus ``settings``.

    ``inference_replicas`` free ports are listed in TAILOR_INFERENCE_ADDR: the launcher starts
    one replica per configured base model on them, in order.
    """
    ports = {name: free_port() for name in SERVICES}
    inference = [f"127.0.0.1:{ports['inference']}"]
    inference += [f"127.0.0.1:{free_port()}" for _ in range(inference_replicas - 1)]
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TAILOR_")}
    environment.update(
        TAILOR_DATA_DIR=str(data_dir),
        TAILOR_DATASET_ADDR=f"127.0.0.1:{ports['dataset']}",
        TAILOR_TRAINER_ADDR=f"127.0.0.1:{ports['trainer']}",
        TAILOR_INFERENCE_ADDR=",".join(inference),
        TAILOR_GATEWAY_PORT=str(ports["gateway"]),
        HF_HUB_OFFLINE="1",
        PYTHONUNBUFFERED="1",
        # make up's `auto` picks vLLM where it is installed; a test that is not about the
        # engine runs the hf engine, which starts in a second (tests/e2e/test_vllm_stack.py
        # runs the same flow on vLLM).
        TAILOR_INFERENCE_ENGINE="hf",
    )
    environment.update(settings)
    return environment


@contextlib.contextmanager
def running_stack(data_dir: Path, *, inference_replicas: int = 1, **settings: str) -> Iterator[RunningStack]:
    """Starts the platform with ``settings`` (``TAILOR_*=value``), waits until it is up, stops it after.

    With several base models configured, pass ``inference_replicas`` (one per base the stack
    serves) so that each replica gets a free port.
    """
    environment = stack_environment(data_dir, inference_replicas=inference_replicas, **settings)
    launcher = OutputWatchedProcess([sys.executable, "-m", "services.local_stack"], environment)
    try:
        launcher.wait_for("all services are up", STARTUP_TIMEOUT_S)
        url = f"http://127.0.0.1:{environment['TAILOR_GATEWAY_PORT']}"
        yield RunningStack(url, launcher, environment)
    finally:
        launcher.stop()


def assert_served_by_vllm(output: list[str]) -> None:
    """The launcher's ``output`` says the inference service started on the vLLM engine."""
    assert any('"engine": "vllm"' in line and "engine ready" in line for line in output), (
        "the inference service did not start on vLLM"
    )
