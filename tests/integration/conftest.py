"""Fixtures for integration tests: loopback S3 servers, and the object store on each backend.

The S3 side runs against two servers (see docs/object_store.md): moto, a mock in this
process, and SeaweedFS, a real S3 implementation in its own process, which verifies
signatures. Each is started once per session, on first use; tests are kept apart by
buckets. Test ids name the server: ``s3-moto``, ``s3-seaweedfs``.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from services.common.object_store import ObjectStore, open_object_store
from services.common.settings import CommonSettings
from tests.support.s3_server import S3Server, moto_s3_server
from tests.support.seaweedfs_server import require_weed, seaweedfs_s3_server

# Test id -> the session fixture serving that S3 server.
S3_SERVERS = {"s3-moto": "s3_server", "s3-seaweedfs": "seaweedfs_server"}
OBJECT_STORE_BACKENDS = ["filesystem", *S3_SERVERS]

_bucket_numbers = itertools.count()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """One moto S3 server for the whole test session, on 127.0.0.1."""
    with moto_s3_server() as server:
        yield server


@pytest.fixture(scope="session")
def seaweedfs_server() -> Iterator[S3Server]:
    """One SeaweedFS S3 server for the whole test session, on 127.0.0.1; fails if `weed` is missing."""
    require_weed()
    with seaweedfs_s3_server() as server:
        yield server


@pytest.fixture
def s3_server_for(request: pytest.FixtureRequest) -> Callable[[str], S3Server]:
    """Maps a backend id (``s3-moto``, ``s3-seaweedfs``) to its session server, started on first use."""
    return lambda backend: request.getfixturevalue(S3_SERVERS[backend])


@pytest.fixture(params=list(S3_SERVERS))
def any_s3_server(request: pytest.FixtureRequest) -> S3Server:
    """Each S3 server in turn."""
    return request.getfixturevalue(S3_SERVERS[request.param])


@pytest.fixture
def fresh_bucket() -> str:
    """A bucket name no other test has used (each server's buckets live for the whole session)."""
    return f"test-bucket-{next(_bucket_numbers)}"


@pytest.fixture(params=OBJECT_STORE_BACKENDS)
async def object_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ObjectStore]:
    """The object store on each backend: a directory under tmp_path, or a fresh bucket on each S3 server."""
    if request.param == "filesystem":
        settings = CommonSettings(data_dir=tmp_path / "data")
    else:
        server: S3Server = request.getfixturevalue(S3_SERVERS[request.param])
        settings = server.settings(request.getfixturevalue("fresh_bucket"), data_dir=tmp_path / "data")
    store = open_object_store(settings)
    yield store
    await store.close()
