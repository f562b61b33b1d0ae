"""Fixtures for every test directory: the records database on SQLite and on a real Postgres.

Every test process also gets internal-auth keys (:mod:`tests.support.internal_auth`).

Production keeps its records in Postgres and a laptop in SQLite; tests that touch records
take ``database_url`` and run once on each (ids ``sqlite`` and ``postgres``). One Postgres
server serves the whole session, started only when a test first asks for it; each test
gets a fresh database on it. Missing Postgres binaries fail those tests, never skip them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from services.common.database import sqlite_url
from tests.support import internal_auth
from tests.support.postgres_server import PostgresServer, PostgresUnavailable, postgres_server

# Internal calls are authenticated in tests as in production: a test key set, and clients
# that call as the gateway by default (tests/support/internal_auth.py).
internal_auth.install()

DATABASES = ["sqlite", "postgres"]


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL server for the session, on 127.0.0.1."""
    try:
        with postgres_server() as server:
            yield server
            return
    except PostgresUnavailable as error:
        unavailable = str(error)
    pytest.fail(unavailable, pytrace=False)


@pytest.fixture
def postgres_url(postgres: PostgresServer) -> Iterator[str]:
    """The SQLAlchemy URL of a fresh, empty Postgres database of this test's own (dropped after it)."""
    url = postgres.create_database()
    yield url
    postgres.drop_database(url)


@pytest.fixture(params=DATABASES)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The records database on each engine: a SQLite file under tmp_path, or a fresh Postgres database."""
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_url"))
    return sqlite_url(tmp_path / "records" / "test.db")
