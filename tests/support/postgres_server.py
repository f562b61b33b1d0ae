"""A throwaway PostgreSQL server for tests: production keeps its records in Postgres.

The records layer, the dataset and trainer services and the whole stack run against
SQLite and against a real Postgres, because the two differ where bugs hide (types,
ordering, isolation, concurrent writers). :func:`postgres_server` ``initdb``\\ s a
cluster in a fresh temporary directory and runs ``postgres`` on 127.0.0.1 on a free
port (and a unix socket inside that directory), with trust authentication and fsync
off: nothing in it needs to survive the test session. Tests get a fresh database each
from :meth:`PostgresServer.create_database`.

Postgres refuses to run as root, and tests here often run as root (CI, containers): then
the server runs as ``nobody``. Its directory is made with ``tempfile.mkdtemp`` and
handed to that user; pytest's ``tmp_path`` would not do, it is private to root.

``postgres`` runs as a direct child of the test process (rather than daemonized by
``pg_ctl``) and asks for SIGKILL when that process dies (``setpriv --pdeathsig``), so an
interrupted or killed test session does not leave a server behind. The context manager
stops it and removes the directory on the way out, Ctrl-C included.

Missing binaries are an error, never a skip: CI must run the Postgres tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from tests.support.processes import free_port

SUPERUSER = "tailor"
UNPRIVILEGED_USER = "nobody"
STARTUP_TIMEOUT_S = 60.0
# A port taken between choosing it and the server binding it: try another.
START_ATTEMPTS = 3
REQUIRED_BINARIES = ("initdb", "postgres")


class PostgresUnavailable(RuntimeError):
    """The server could not be set up; the message says what to install or what it printed."""


@dataclass
class PostgresServer:
    """A running server: where it listens and how to get a database of one's own on it."""

    host: str
    port: int
    directory: Path
    process: subprocess.Popen[bytes]
    _database_numbers: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def url(self, database: str, driver: str = "asyncpg") -> str:
        """The SQLAlchemy URL of ``database`` (``driver`` empty: a plain ``postgresql://`` URL)."""
        scheme = f"postgresql+{driver}" if driver else "postgresql"
        return f"{scheme}://{SUPERUSER}@{self.host}:{self.port}/{database}"

    def create_database(self) -> str:
        """Creates an empty database no other test uses; returns its SQLAlchemy (asyncpg) URL.

        Synchronous, so that sync and async fixtures alike can call it: the statement runs
        on an event loop of its own in a helper thread.
        """
        name = f"test_{next(self._database_numbers)}"
        _run_coroutine_in_thread(self._execute(f'CREATE DATABASE "{name}"'))
        return self.url(name)

    def drop_database(self, url: str) -> None:
        """Drops a database :meth:`create_database` made, closing what is still connected to it."""
        name = url.rsplit("/", 1)[1]
        _run_coroutine_in_thread(self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    def stop(self) -> None:
        """Stops the server now (a test can take its database away); stopping twice is harmless."""
        _stop(self.process)

    async def _execute(self, statement: str) -> None:
        connection = await asyncpg.connect(
            host=self.host, port=self.port, user=SUPERUSER, database="postgres"
        )
        try:
            await connection.execute(statement)
        finally:
            await connection.close()


def _run_coroutine_in_thread(coroutine: Any) -> Any:
    result: list[Any] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            result.append(asyncio.run(coroutine))
        except BaseException as error:
            failure.append(error)

    thread = threading.Thread(target=run, name="postgres-admin")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result[0]


def _binary_directory() -> Path | None:
    """Where ``initdb`` and ``postgres`` are: on PATH, or Debian's newest /usr/lib/postgresql/<v>/bin."""
    found = shutil.which("initdb")
    if found is not None:
        return Path(found).resolve().parent
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda path: int(path.parts[-3]) if path.parts[-3].isdigit() else 0,
    )
    return versions[-1].parent if versions else None


def _missing_binaries() -> list[str]:
    directory = _binary_directory()
    return [name for name in REQUIRED_BINARIES if directory is None or not (directory / name).exists()]


def _run_as() -> dict[str, Any]:
    """subprocess arguments that run the server's commands as an unprivileged user when we are root."""
    if os.geteuid() != 0:
        return {}
    user = pwd.getpwnam(UNPRIVILEGED_USER)
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


def _server_environment() -> dict[str, str]:
    # Only what the server needs: a root HOME or a user's PG* variables must not leak in.
    path = os.environ.get("PATH", "/usr/bin:/bin")
    directory = _binary_directory()
    if directory is not None:
        path = f"{directory}:{path}"
    return {"PATH": path, "LC_ALL": "C", "LANG": "C"}


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """Runs a fresh PostgreSQL server for the duration of the block; see the module docstring."""
    missing = _missing_binaries()
    if missing:
        raise PostgresUnavailable(
            f"PostgreSQL server binaries not found on PATH or in /usr/lib/postgresql/*/bin: "
            f"{', '.join(missing)}. The tests run against a real Postgres; `make test` installs it "
            "with apt-get when run as root, else install it yourself (Debian: apt-get install postgresql)."
        )
    run_as = _run_as()
    directory = Path(tempfile.mkdtemp(prefix="tailor-postgres-"))
    process: subprocess.Popen[bytes] | None = None
    try:
        if run_as:
            os.chown(directory, run_as["user"], run_as["group"])
        data = directory / "data"
        _initdb(data, directory, run_as)
        for attempt in range(1, START_ATTEMPTS + 1):
            port = free_port()
            process = _start(data, directory, port, run_as)
            if _wait_ready(process, data, directory):
                break
            if attempt == START_ATTEMPTS:
                raise PostgresUnavailable(f"postgres did not start:\n{_log_tail(directory)}")
        assert process is not None
        yield PostgresServer(host="127.0.0.1", port=port, directory=directory, process=process)
    finally:
        if process is not None:
            _stop(process)
        shutil.rmtree(directory, ignore_errors=True)


def _initdb(data: Path, directory: Path, run_as: dict[str, Any]) -> None:
    result = subprocess.run(
        [str(_binary_directory() / "initdb"), "--pgdata", str(data)]
        + ["--username", SUPERUSER, "--auth", "trust"]
        + ["--encoding", "UTF8", "--locale", "C", "--no-sync"],
        cwd=directory,
        env=_server_environment(),
        capture_output=True,
        text=True,
        **run_as,
    )
    if result.returncode != 0:
        raise PostgresUnavailable(f"initdb failed ({result.returncode}):\n{result.stdout}{result.stderr}")


def _start(data: Path, directory: Path, port: int, run_as: dict[str, Any]) -> subprocess.Popen[bytes]:
    options = {
        "listen_addresses": "127.0.0.1",
        "unix_socket_directories": str(directory),
        # Throwaway data: no durability, nothing to wait for on disk.
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        # Several services, each with a connection pool, share the one server.
        "max_connections": "300",
    }
    command = [str(_binary_directory() / "postgres"), "-D", str(data), "-p", str(port)]
    for name, value in options.items():
        command += ["-c", f"{name}={value}"]
    setpriv = shutil.which("setpriv")
    if setpriv is not None:
        # The kernel kills the server when the test process dies, however it dies.
        command = [setpriv, "--pdeathsig", "KILL", *command]
    log = open(directory / "postgres.log", "ab")  # noqa: SIM115 (the child keeps it open)
    try:
        return subprocess.Popen(
            command,
            cwd=directory,
            env=_server_environment(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            **run_as,
        )
    finally:
        log.close()


def _wait_ready(process: subprocess.Popen[bytes], data: Path, directory: Path) -> bool:
    """Waits until the server accepts connections (postmaster.pid says "ready"); False if it exited."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    pid_file = data / "postmaster.pid"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        with contextlib.suppress(FileNotFoundError):
            lines = pid_file.read_text().splitlines()
            if len(lines) >= 8 and lines[7].strip() == "ready":
                return True
        time.sleep(0.05)
    raise PostgresUnavailable(f"postgres not ready after {STARTUP_TIMEOUT_S:.0f}s:\n{_log_tail(directory)}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    # SIGQUIT is Postgres' immediate shutdown: the data is thrown away anyway.
    if process.poll() is None:
        process.send_signal(signal.SIGQUIT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _log_tail(directory: Path) -> str:
    try:
        return "\n".join((directory / "postgres.log").read_text(errors="replace").splitlines()[-40:])
    except OSError:
        return "(no log)"


__all__ = ["PostgresServer", "PostgresUnavailable", "postgres_server"]
