"""Outages as a user of ``POST /v1/files`` meets them: 503 with ``Retry-After``, and nothing left behind.

The gateway runs in this process (the real app on uvicorn); the dataset service runs as
deployed (``python -m services.dataset``) in a child process that the tests kill with
SIGKILL, or whose objects directory they make unwritable, while an upload streams
through the gateway. The client must get OpenAI's envelope with status 503 and
``Retry-After`` (so the SDK retries after a pause), never 500; and once the dataset
service is back, the store must hold nothing of the interrupted upload: no temporary
file, no incomplete multipart upload, no record.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from services.dataset.config import DatasetSettings
from services.gateway.config import GatewaySettings
from tests.integration.dataset.large_upload import DatasetProcess, chat_examples_block
from tests.integration.dataset.support import leftovers
from tests.support.gateway_server import serving_gateway
from tests.support.processes import free_port
from tests.support.s3_server import ACCESS_KEY, REGION, SECRET_KEY, S3Server

KEY = "sk-outage-test-0001"
ORG = "org-outage"
MiB = 1 << 20
BOUNDARY = "tailor-outage-test"
# Enough bytes that the upload is well under way when the dataset service fails.
FILE_MIB = 24
FAIL_AFTER_MIB = 8
WAIT_S = 60.0


@contextlib.asynccontextmanager
async def gateway(dataset_addr: str, data_dir: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway over ``dataset_addr`` (nothing listens for the other services); a client for it."""
    nowhere = f"127.0.0.1:{free_port()}"
    settings = GatewaySettings(
        data_dir=data_dir,
        api_keys=f"{KEY}={ORG}",
        dataset_addr=dataset_addr,
        trainer_addr=nowhere,
        inference_addr=nowhere,
    )
    async with (
        serving_gateway(settings) as url,
        httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=WAIT_S) as client,
    ):
        yield client


@dataclass
class Dataset:
    """The dataset service process, restartable at the same address with the same settings."""

    environment: dict[str, str]
    process: DatasetProcess | None = None

    async def start(self) -> None:
        address = self.process.address if self.process else None
        self.process = DatasetProcess(self.environment, address=address)
        await self.process.wait_until_serving()

    @property
    def address(self) -> str:
        assert self.process is not None
        return self.process.address

    def kill(self) -> None:
        assert self.process is not None
        self.process.process.kill()
        self.process.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.process.poll() is None:
            self.process.stop()


@contextlib.asynccontextmanager
async def dataset_service(environment: dict[str, str]) -> AsyncIterator[Dataset]:
    dataset = Dataset(environment)
    try:
        await dataset.start()
        yield dataset
    finally:
        dataset.stop()


def upload_body(fail: Callable[[], None]) -> AsyncIterator[bytes]:
    """A multipart upload of a FILE_MIB fine-tuning file; ``fail()`` runs after FAIL_AFTER_MIB."""
    block, _ = chat_examples_block(MiB)

    async def body() -> AsyncIterator[bytes]:
        yield (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nfine-tune\r\n'
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="train.jsonl"\r\n'
            "Content-Type: application/jsonl\r\n\r\n"
        ).encode()
        for sent in range(FILE_MIB):
            if sent == FAIL_AFTER_MIB:
                await asyncio.to_thread(fail)
            yield block
        yield f"\r\n--{BOUNDARY}--\r\n".encode()

    return body()


async def upload(client: httpx.AsyncClient, fail: Callable[[], None]) -> httpx.Response:
    return await client.post(
        "/v1/files",
        content=upload_body(fail),
        headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
    )


def assert_unavailable(response: httpx.Response) -> None:
    """503 in OpenAI's envelope, with a Retry-After the SDK honours."""
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"].isdigit(), response.headers
    error = response.json()["error"]
    assert error["type"] == "server_error" and error["message"], error


async def get_as_the_sdk_would(client: httpx.AsyncClient, path: str, retries: int = 2) -> httpx.Response:
    """GET ``path``, retrying a 503 after its ``Retry-After`` as the openai SDK does (2 retries)."""
    response = await client.get(path)
    for _ in range(retries):
        if response.status_code != 503:
            break
        await asyncio.sleep(float(response.headers["retry-after"]))
        response = await client.get(path)
    return response


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.05)


def temp_files(settings: DatasetSettings) -> list[str]:
    return [name for name in leftovers(settings) if "/.~" in f"/{name}"]


@contextlib.contextmanager
def unwritable(directory: Path) -> Iterator[None]:
    """No entry can be created, renamed or removed in ``directory`` until the block ends.

    As root, permission bits do not stop anyone: the directory is made immutable instead.
    """
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i", str(directory)], check=True)
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", str(directory)], check=True)
    else:
        mode = directory.stat().st_mode
        directory.chmod(0o555)
        try:
            yield
        finally:
            directory.chmod(mode)


def s3_environment(server: S3Server, bucket: str) -> dict[str, str]:
    return {
        "TAILOR_OBJECT_STORE_ENDPOINT": server.endpoint,
        "TAILOR_OBJECT_STORE_BUCKET": bucket,
        "TAILOR_OBJECT_STORE_ACCESS_KEY": ACCESS_KEY,
        "TAILOR_OBJECT_STORE_SECRET_KEY": SECRET_KEY,
        "TAILOR_OBJECT_STORE_REGION": REGION,
        "TAILOR_OBJECT_STORE_PART_SIZE_MIB": "5",
        # No other process writes this bucket: every incomplete upload at start-up is abandoned.
        "TAILOR_OBJECT_STORE_ABANDONED_UPLOAD_S": "0",
    }


@pytest.mark.parametrize("backend", ["filesystem", "s3-seaweedfs"])
async def test_a_dataset_service_killed_mid_upload_is_503_and_its_restart_leaves_nothing(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    environment = {"TAILOR_DATA_DIR": str(tmp_path / "data")}
    if backend != "filesystem":
        server: S3Server = request.getfixturevalue("seaweedfs_server")
        environment.update(s3_environment(server, request.getfixturevalue("fresh_bucket")))
    settings = DatasetSettings(
        data_dir=tmp_path / "data",
        object_store_endpoint=environment.get("TAILOR_OBJECT_STORE_ENDPOINT", ""),
        object_store_bucket=environment.get("TAILOR_OBJECT_STORE_BUCKET", "tailor"),
    )
    async with dataset_service(environment) as dataset:

        def kill_once_the_store_holds_a_partial_upload() -> None:
            wait_until(lambda: bool(leftovers(settings)), "the upload reached the store")
            dataset.kill()

        async with gateway(dataset.address, tmp_path / "gateway") as client:
            response = await upload(client, kill_once_the_store_holds_a_partial_upload)
            assert_unavailable(response)
            # Still down: listing, reading and downloading are 503 too.
            for path in ("/v1/files", "/v1/files/file-x", "/v1/files/file-x/content"):
                assert_unavailable(await client.get(path))

            orphaned = leftovers(settings)
            assert orphaned and all(".~" in key or "(unfinished)" in key for key in orphaned), orphaned
            await dataset.start()  # reports ready only once the sweep has run
            assert leftovers(settings) == []
            # The gateway's channel may still be waiting to reconnect (at most
            # grpc.max_reconnect_backoff_ms, 2 s): its 503 says when to come back.
            listed = await get_as_the_sdk_would(client, "/v1/files")
            assert listed.status_code == 200 and listed.json()["data"] == []


async def test_an_objects_directory_turned_unwritable_mid_upload_is_503_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    environment = {"TAILOR_DATA_DIR": str(tmp_path / "data")}
    settings = DatasetSettings(data_dir=tmp_path / "data")
    files_dir = settings.objects_dir / "orgs" / ORG / "files"
    async with dataset_service(environment) as dataset:
        frozen = contextlib.ExitStack()

        def freeze_once_the_upload_is_being_written() -> None:
            wait_until(lambda: bool(temp_files(settings)), "the upload's temporary file exists")
            frozen.enter_context(unwritable(files_dir))

        async with gateway(dataset.address, tmp_path / "gateway") as client:
            with frozen:
                response = await upload(client, freeze_once_the_upload_is_being_written)
                assert_unavailable(response)
                listed = await client.get("/v1/files")
                assert listed.status_code == 200 and listed.json()["data"] == []
            # Writable again: what could not be removed while it was not goes at the next start.
            assert temp_files(settings), "the failed upload's temporary file could not have been removed"
            dataset.stop()
            await dataset.start()
            assert leftovers(settings) == []


async def test_every_route_whose_service_is_down_is_503_with_retry_after(tmp_path: Path) -> None:
    # Nothing listens behind the gateway: no dataset, trainer or inference service.
    async with gateway(f"127.0.0.1:{free_port()}", tmp_path) as client:
        chat = {"model": "any-model", "messages": [{"role": "user", "content": "hi"}]}
        for method, path, body in [
            ("GET", "/v1/files", None),
            ("GET", "/v1/files/file-x/content", None),
            ("DELETE", "/v1/files/file-x", None),
            ("GET", "/v1/fine_tuning/jobs", None),
            ("GET", "/v1/fine_tuning/jobs/ftjob-x", None),
            ("GET", "/v1/models", None),
            ("POST", "/v1/chat/completions", chat),
            ("POST", "/v1/chat/completions", {**chat, "stream": True}),
        ]:
            response = await client.request(method, path, json=body)
            assert_unavailable(response)
        assert_unavailable(await upload(client, lambda: None))


async def test_a_dataset_service_killed_mid_download_breaks_the_download_off(tmp_path: Path) -> None:
    environment = {"TAILOR_DATA_DIR": str(tmp_path / "data")}
    async with dataset_service(environment) as dataset, gateway(dataset.address, tmp_path / "gw") as client:
        uploaded = await upload(client, lambda: None)
        assert uploaded.status_code == 200, uploaded.text
        received = 0
        # The response started as 200 with the file's Content-Length: a download cut short
        # must fail as one, never pass for a complete, shorter file.
        with pytest.raises(httpx.RemoteProtocolError):
            async with client.stream("GET", f"/v1/files/{uploaded.json()['id']}/content") as response:
                assert response.status_code == 200
                async for chunk in response.aiter_bytes():
                    if not received:
                        dataset.kill()
                    received += len(chunk)
        assert received < FILE_MIB * MiB
