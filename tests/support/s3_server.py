"""An S3 server on loopback for tests: moto's server mode (no MinIO binary is installable here).

* :func:`moto_s3_server` runs it on a thread of the test process: cheap, for most tests.
  Every such server in one process shares moto's in-memory state, so give each test
  its own bucket.
* :func:`moto_s3_server_process` runs it in a child process, which a test can kill to
  see how clients cope with the store dying mid-request.

``python -m tests.support.s3_server`` serves until killed, after printing
``{"host": ..., "port": ...}`` on one line (that is what the second form starts).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moto.server import ThreadedMotoServer

from services.common.settings import CommonSettings

# moto accepts any credentials; these only have to be consistent.
ACCESS_KEY = "tailor-test"
SECRET_KEY = "tailor-test-secret"
REGION = "us-east-1"

_REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class S3Server:
    """Where a test S3 server listens, and ready-made clients and settings for it."""

    host: str
    port: int

    @property
    def endpoint(self) -> str:
        """``host:port``, the form TAILOR_OBJECT_STORE_ENDPOINT takes."""
        return f"{self.host}:{self.port}"

    def settings(self, bucket: str, **overrides: Any) -> CommonSettings:
        """Settings pointing Tailor's object store at this server's ``bucket``."""
        return CommonSettings(
            object_store_endpoint=self.endpoint,
            object_store_bucket=bucket,
            object_store_access_key=ACCESS_KEY,
            object_store_secret_key=SECRET_KEY,
            object_store_region=REGION,
            **overrides,
        )

    def boto3_client(self) -> Any:
        """A boto3 S3 client, to look at the server independently of the code under test."""
        import boto3  # only tests that inspect the server pay for importing boto3

        return boto3.client(
            "s3",
            endpoint_url=f"http://{self.endpoint}",
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
        )


@contextlib.contextmanager
def moto_s3_server() -> Iterator[S3Server]:
    """Run moto's S3 server on 127.0.0.1 (a free port) in this process until the block exits."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield S3Server(host, port)
    finally:
        server.stop()


@dataclass(frozen=True)
class S3ServerProcess:
    """A test S3 server in its own process, which :meth:`kill` ends abruptly."""

    server: S3Server
    process: subprocess.Popen[str]

    def kill(self) -> None:
        """SIGKILL: listening and open connections vanish at once, as when a store crashes."""
        self.process.kill()
        self.process.wait()


@contextlib.contextmanager
def moto_s3_server_process() -> Iterator[S3ServerProcess]:
    """Run moto's S3 server on 127.0.0.1 in a child process until the block exits (or a kill)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.s3_server"],
        cwd=_REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # moto logs every request there
        text=True,
    )
    try:
        announced = process.stdout.readline() if process.stdout else ""
        if not announced:
            raise RuntimeError(f"the S3 server process exited with {process.wait()} before listening")
        address = json.loads(announced)
        yield S3ServerProcess(S3Server(address["host"], address["port"]), process)
    finally:
        process.kill()
        process.wait()
        if process.stdout:
            process.stdout.close()


def _serve_until_killed() -> None:
    with moto_s3_server() as server:
        print(json.dumps({"host": server.host, "port": server.port}), flush=True)
        while True:
            time.sleep(3600)


if __name__ == "__main__":
    _serve_until_killed()
