"""Interrupted uploads, on every backend: the store itself leaves nothing, even of a killed writer.

A ``put`` cancelled while it completes (the rename, the multipart completion) waits for
that step and removes what it stored. What a killed process left (a temporary file, an
incomplete multipart upload) is removed by ``remove_abandoned_uploads``, which must
never touch an upload still in progress.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from services.common.object_store import FilesystemObjectStore, ObjectStore, S3ObjectStore, StoredObject
from services.common.object_store import filesystem
from services.common.object_store.temp_files import open_temp_file
from tests.integration.test_object_store import chunks_of, half_written, pattern
from tests.support.s3_server import S3Server

MiB = 1 << 20
T = TypeVar("T")


async def test_a_put_cancelled_as_it_completes_leaves_nothing(
    object_store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The cancellation is sent from inside the last step (the rename, or the multipart
    # completion, in a worker thread) once it has stored the object, before it returns.
    loop = asyncio.get_running_loop()
    upload: asyncio.Task[StoredObject] | None = None
    step_ended = threading.Event()

    def cancelling_first(step: Callable[..., T]) -> Callable[..., T]:
        def step_cancelled_meanwhile(*args: Any, **kwargs: Any) -> T:
            assert upload is not None
            try:
                result = step(*args, **kwargs)
                loop.call_soon_threadsafe(upload.cancel)
                time.sleep(0.2)  # lets the cancellation land while the step has not returned
                return result
            finally:
                step_ended.set()

        return step_cancelled_meanwhile

    if isinstance(object_store, FilesystemObjectStore):
        monkeypatch.setattr(filesystem, "commit_temp_file", cancelling_first(filesystem.commit_temp_file))
    else:
        client = object_store._client  # type: ignore[attr-defined]
        monkeypatch.setattr(
            client, "_complete_multipart_upload", cancelling_first(client._complete_multipart_upload)
        )

    data = b"".join(pattern(MiB, seed=index) for index in range(20))  # more than one 16 MiB S3 part
    upload = asyncio.create_task(object_store.put("uploads/cancelled-late", chunks_of(data, MiB)))
    with pytest.raises(asyncio.CancelledError):
        await upload
    assert await asyncio.to_thread(step_ended.wait, 30)  # whatever it stored is there by now
    assert not await object_store.exists("uploads/cancelled-late")
    assert await half_written(object_store) == []


def leave_an_abandoned_upload(store: ObjectStore, key: str) -> None:
    """What a writer killed mid-upload leaves: a temporary file nobody holds, or a multipart upload."""
    if isinstance(store, FilesystemObjectStore):
        directory = store.root / Path(key).parent
        directory.mkdir(parents=True, exist_ok=True)
        (directory / ".~0123456789abcdef").write_bytes(b"half a file")
        return
    assert isinstance(store, S3ObjectStore)
    host, port = store.endpoint.rsplit(":", 1)
    client = S3Server(host, int(port)).boto3_client()
    started = client.create_multipart_upload(Bucket=store.bucket, Key=key)
    client.upload_part(
        Bucket=store.bucket, Key=key, UploadId=started["UploadId"], PartNumber=1, Body=b"half a file"
    )


async def test_abandoned_uploads_are_removed_and_only_those_asked_for(object_store: ObjectStore) -> None:
    await object_store.put_bytes("orgs/o1/files/kept", b"a complete object")  # also creates the bucket
    leave_an_abandoned_upload(object_store, "orgs/o1/files/file-1")
    leave_an_abandoned_upload(object_store, "orgs/o1/jobs/job-1/checkpoint")
    leave_an_abandoned_upload(object_store, "elsewhere/file-2")
    assert len(await half_written(object_store)) == 3

    def is_file(key: str) -> bool:
        return key.split("/")[2:3] == ["files"]

    removed = await object_store.remove_abandoned_uploads("orgs/", older_than_s=0, matching=is_file)

    assert removed == 1
    assert len(await half_written(object_store)) == 2
    assert await object_store.get_bytes("orgs/o1/files/kept") == b"a complete object"
    assert await object_store.remove_abandoned_uploads("", older_than_s=0) == 2
    assert await half_written(object_store) == []


async def test_s3_spares_incomplete_uploads_younger_than_asked(
    seaweedfs_server: S3Server, request: pytest.FixtureRequest
) -> None:
    # S3 cannot tell a live upload from a dead one: only the age keeps other writers' uploads
    # safe. On SeaweedFS only: moto reports every upload as initiated on 2010-11-10.
    server = seaweedfs_server
    store = S3ObjectStore(
        server.endpoint,
        request.getfixturevalue("fresh_bucket"),
        access_key="tailor-test",
        secret_key="tailor-test-secret",
        region="us-east-1",
    )
    try:
        await store.check()
        leave_an_abandoned_upload(store, "orgs/o1/files/file-1")
        assert await store.remove_abandoned_uploads("orgs/", older_than_s=3600) == 0
        assert await half_written(store) == ["orgs/o1/files/file-1"]
    finally:
        await store.close()


async def test_a_temporary_file_being_written_is_never_swept(tmp_path: Path) -> None:
    store = FilesystemObjectStore(tmp_path / "objects")
    writing = open_temp_file(store.root / "orgs/o1/files/file-1")  # holds its lock, as a live writer does
    try:
        assert await store.remove_abandoned_uploads("", older_than_s=0) == 0
        assert Path(writing.name).exists()
    finally:
        writing.close()
    # Its writer gone (closed without committing, as a killed process's files are), it is swept.
    assert await store.remove_abandoned_uploads("", older_than_s=0) == 1
    assert not Path(writing.name).exists()
