"""Fixtures for the dataset service over real gRPC: its settings on each object store backend and
records database (SQLite, Postgres), and the service."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from services.common.grpc_client import idempotent
from services.dataset.config import DatasetSettings
from services.dataset.files import FileService
from services.dataset.server import dataset_registration
from tailor.dataset.v1 import dataset_service_pb2 as pb
from tailor.dataset.v1 import dataset_service_pb2_grpc as pb_grpc
from tests.support.grpc_services import serving
from tests.support.s3_server import ACCESS_KEY, REGION, SECRET_KEY, S3Server

DATASET = pb.DESCRIPTOR.services_by_name["DatasetService"]
READS = idempotent(*(DATASET.methods_by_name[name] for name in ("GetFile", "ListFiles", "DownloadFile")))

SettingsFactory = Callable[..., DatasetSettings]


def s3_settings(server: S3Server, bucket: str, **overrides: Any) -> DatasetSettings:
    """Dataset settings whose object store is ``bucket`` on the loopback S3 server."""
    return DatasetSettings(
        object_store_endpoint=server.endpoint,
        object_store_bucket=bucket,
        object_store_access_key=ACCESS_KEY,
        object_store_secret_key=SECRET_KEY,
        object_store_region=REGION,
        **overrides,
    )


@pytest.fixture(params=["filesystem", "s3-moto", "s3-seaweedfs"])
def backend(request: pytest.FixtureRequest) -> str:
    """The object store: a directory, or a bucket on one of the S3 servers (see ../conftest.py)."""
    return request.param


@pytest.fixture
def make_settings(
    backend: str, database_url: str, request: pytest.FixtureRequest, tmp_path: Path
) -> SettingsFactory:
    """Builds the dataset service's settings for this test's backend and database, with overrides."""

    def make(**overrides: Any) -> DatasetSettings:
        overrides.setdefault("data_dir", tmp_path / "data")
        overrides.setdefault("dataset_database_url", database_url)
        if backend == "filesystem":
            return DatasetSettings(**overrides)
        server: S3Server = request.getfixturevalue("s3_server_for")(backend)
        return s3_settings(server, request.getfixturevalue("fresh_bucket"), **overrides)

    return make


@dataclass
class Served:
    """A running dataset service: a stub to call it, and the FileService behind it."""

    stub: pb_grpc.DatasetServiceStub
    files: FileService
    settings: DatasetSettings


async def start(settings: DatasetSettings) -> AsyncIterator[Served]:
    files = FileService.open(settings)
    try:
        async with serving(settings, [dataset_registration(files)], idempotent_methods=READS) as channel:
            yield Served(pb_grpc.DatasetServiceStub(channel), files, settings)
    finally:
        await files.close()


@pytest.fixture
async def service(make_settings: SettingsFactory) -> AsyncIterator[Served]:
    """The dataset service on 127.0.0.1, on each object store backend."""
    async for served in start(make_settings()):
        yield served
