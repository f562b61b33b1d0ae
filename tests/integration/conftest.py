"""Fixtures for integration tests: a loopback S3 server, and the object store on each backend."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from services.common.object_store import ObjectStore, open_object_store
from services.common.settings import CommonSettings
from tests.support.s3_server import S3Server, moto_s3_server

_bucket_numbers = itertools.count()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """One moto S3 server for the whole test session, on 127.0.0.1."""
    with moto_s3_server() as server:
        yield server


@pytest.fixture
def fresh_bucket() -> str:
    """A bucket name no other test has used (moto's state is shared by the whole session)."""
    return f"test-bucket-{next(_bucket_numbers)}"


@pytest.fixture(params=["filesystem", "s3"])
async def object_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ObjectStore]:
    """The object store on each backend: a directory under tmp_path, or a fresh S3 bucket."""
    if request.param == "filesystem":
        settings = CommonSettings(data_dir=tmp_path / "data")
    else:
        s3_server: S3Server = request.getfixturevalue("s3_server")
        settings = s3_server.settings(request.getfixturevalue("fresh_bucket"), data_dir=tmp_path / "data")
    store = open_object_store(settings)
    yield store
    await store.close()
