"""The dataset service over real gRPC on 127.0.0.1, on the filesystem and the S3 object store.

What a caller sees: uploads stored and validated as they stream, records listed, fetched,
downloaded and deleted; uploads that fail for any reason leave nothing behind; records and
bytes survive a restart; another organization's files do not exist.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import grpc
import pytest
from sqlalchemy import text

from services.common.grpc_client import rpc_error
from services.common.settings import MiB
from services.dataset.config import DatasetSettings
from tailor.dataset.v1 import dataset_service_pb2 as pb
from tests.integration.dataset.conftest import Served, SettingsFactory, s3_settings, start
from tests.integration.dataset.large_upload import chat_examples_block
from tests.integration.dataset.support import CHAT, download, jsonl, leftovers, upload, upload_requests
from tests.support.grpc_services import as_organization
from tests.support.postgres_server import postgres_server
from tests.support.s3_server import moto_s3_server_process

ORG = "org-a"


async def expect_error(call: object, status: grpc.StatusCode, param: str | None = None) -> str:
    """Await ``call``; it must fail with ``status`` (and ``param``); returns the message."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    error = rpc_error(caught.value)
    assert error.status == status, error
    if param is not None:
        assert error.param == param, error
    return error.message


async def test_a_valid_file_is_stored_validated_listed_and_served_back(service: Served) -> None:
    data = jsonl(CHAT, CHAT, CHAT)
    with as_organization(ORG):
        # Small chunks: lines straddle chunk boundaries, as they do from a real client.
        file = await upload(service.stub, data, chunk_size=50)
        assert file.id.startswith("file-")
        assert (file.organization_id, file.filename, file.bytes) == (ORG, "train.jsonl", len(data))
        assert (file.purpose, file.status, file.status_details) == (
            pb.FILE_PURPOSE_FINE_TUNE,
            pb.FILE_STATUS_PROCESSED,
            "",
        )
        assert file.sha256 == hashlib.sha256(data).hexdigest()
        assert abs(file.created_at - time.time()) < 60 and not file.HasField("expires_at")
        characters = sum(len(m["content"]) for m in CHAT["messages"])
        assert file.statistics == pb.FileStatistics(
            format=pb.EXAMPLE_FORMAT_CHAT,
            examples=3,
            messages=9,
            characters=3 * characters,
            trained_messages=3,
        )

        assert (await service.stub.GetFile(pb.GetFileRequest(file_id=file.id))).file == file
        listed = await service.stub.ListFiles(pb.ListFilesRequest())
        assert list(listed.files) == [file] and not listed.has_more
        assert await download(service.stub, file.id) == (file, data)
    assert leftovers(service.settings) == [f"orgs/{ORG}/files/{file.id}"]


async def test_a_file_with_bad_json_on_line_3_is_kept_as_error_naming_line_3(service: Served) -> None:
    data = jsonl(CHAT, CHAT) + b'{"messages": [}\n' + jsonl(CHAT)
    with as_organization(ORG):
        file = await upload(service.stub, data)
        assert file.status == pb.FILE_STATUS_ERROR
        assert [(p.line, p.code) for p in file.problems] == [(3, "invalid_json")]
        assert file.status_details == "1 problem: line 3: invalid JSON (Expecting value at column 15)"
        assert not file.HasField("statistics")
        # Like OpenAI, a file in error is still a file: listed, downloadable, deletable.
        assert (await service.stub.GetFile(pb.GetFileRequest(file_id=file.id))).file == file
        assert (await download(service.stub, file.id))[1] == data
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await service.stub.GetFileStatistics(pb.GetFileStatisticsRequest(file_id=file.id))
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_files_of_other_purposes_are_stored_without_content_checks(service: Served) -> None:
    data = b"\xff\x00 not jsonl at all"
    with as_organization(ORG):
        file = await upload(service.stub, data, purpose=pb.FILE_PURPOSE_BATCH, filename="batch.bin")
        assert (file.status, file.purpose, file.bytes) == (
            pb.FILE_STATUS_PROCESSED,
            pb.FILE_PURPOSE_BATCH,
            len(data),
        )
        assert not file.HasField("statistics")
        assert (await download(service.stub, file.id))[1] == data


async def test_the_filename_is_metadata_only(service: Served) -> None:
    with as_organization(ORG):
        file = await upload(service.stub, jsonl(CHAT), filename="../../etc/passwd")
    assert file.filename == "../../etc/passwd"
    assert leftovers(service.settings) == [f"orgs/{ORG}/files/{file.id}"]


async def test_a_download_can_ask_for_a_range(service: Served) -> None:
    data = jsonl(*[CHAT] * 20)
    with as_organization(ORG):
        file = await upload(service.stub, data)
        assert (await download(service.stub, file.id, offset=100, length=50))[1] == data[100:150]
        assert (await download(service.stub, file.id, offset=len(data) - 10))[1] == data[-10:]
        assert (await download(service.stub, file.id, offset=len(data) + 1))[1] == b""
        await expect_error(
            download(service.stub, file.id, offset=-1), grpc.StatusCode.INVALID_ARGUMENT, param="offset"
        )


# Uploads that fail leave nothing: no record, no object, no unfinished upload.


async def stream_of(requests: list[pb.UploadFileRequest]) -> AsyncIterator[pb.UploadFileRequest]:
    for request in requests:
        yield request


def meta(**fields: object) -> pb.UploadFileRequest:
    fields = {"filename": "train.jsonl", "purpose": pb.FILE_PURPOSE_FINE_TUNE, **fields}
    return pb.UploadFileRequest(metadata=pb.UploadFileMetadata(**fields))


def end(**fields: object) -> pb.UploadFileRequest:
    return pb.UploadFileRequest(end=pb.UploadFileEnd(**fields))


METADATA = meta()
CHUNK = pb.UploadFileRequest(chunk=jsonl(CHAT))
END = pb.UploadFileRequest(end=pb.UploadFileEnd())

MALFORMED_UPLOADS = {
    "empty stream": ([], "metadata"),
    "chunk before metadata": ([CHUNK, METADATA, END], "metadata"),
    "metadata twice": ([METADATA, CHUNK, METADATA, CHUNK, END], "metadata"),
    "no end message": ([METADATA, CHUNK], "end"),
    "no end message, short of the announced size": ([meta(expected_bytes=10**6), CHUNK], "expected_bytes"),
    "chunk after the end": ([METADATA, CHUNK, END, CHUNK], "end"),
    "no purpose": ([meta(purpose=pb.FILE_PURPOSE_UNSPECIFIED), CHUNK, END], "purpose"),
    "no filename": ([meta(filename=""), CHUNK, END], "filename"),
    "long filename": ([meta(filename="x" * 513), CHUNK, END], "filename"),
    "control character in filename": ([meta(filename="a\nb"), CHUNK, END], "filename"),
    "more than announced": ([meta(expected_bytes=5), CHUNK, END], "expected_bytes"),
    "less than announced": ([meta(expected_bytes=10**6), CHUNK, END], "expected_bytes"),
    "expiry out of range": ([meta(expires_after_seconds=60), CHUNK, END], "expires_after"),
    "expiry out of range in the end": ([METADATA, CHUNK, end(expires_after_seconds=60)], "expires_after"),
    "expiry in both the metadata and the end": (
        [meta(expires_after_seconds=3600), CHUNK, end(expires_after_seconds=7200)],
        "expires_after",
    ),
}


@pytest.mark.parametrize(("requests", "param"), MALFORMED_UPLOADS.values(), ids=MALFORMED_UPLOADS.keys())
async def test_a_malformed_upload_is_refused_and_leaves_nothing(
    service: Served, requests: list[pb.UploadFileRequest], param: str
) -> None:
    with as_organization(ORG):
        await expect_error(
            service.stub.UploadFile(stream_of(requests)), grpc.StatusCode.INVALID_ARGUMENT, param=param
        )
        assert not (await service.stub.ListFiles(pb.ListFilesRequest())).files
    assert leftovers(service.settings) == []


async def test_an_announced_size_completes_an_upload_without_an_end_message(service: Served) -> None:
    data = jsonl(CHAT)
    with as_organization(ORG):
        response = await service.stub.UploadFile(stream_of([meta(expected_bytes=len(data)), CHUNK]))
    assert response.file.bytes == len(data) and response.file.status == pb.FILE_STATUS_PROCESSED


async def test_an_expiry_sent_after_the_bytes_is_applied_to_the_record(service: Served) -> None:
    # The gateway learns it there when the HTTP form's expires_after fields follow the file.
    with as_organization(ORG):
        requests = [METADATA, CHUNK, end(expires_after_seconds=7200)]
        response = await service.stub.UploadFile(stream_of(requests))
        assert response.file.expires_at == response.file.created_at + 7200
        stored = await service.stub.GetFile(pb.GetFileRequest(file_id=response.file.id))
        assert stored.file.expires_at == response.file.expires_at


async def test_the_clients_checksum_must_match_the_bytes(service: Served) -> None:
    data = jsonl(CHAT)
    with as_organization(ORG):
        wrong = service.stub.UploadFile(upload_requests(data, sha256="0" * 64))
        message = await expect_error(wrong, grpc.StatusCode.DATA_LOSS, param="sha256")
        assert hashlib.sha256(data).hexdigest() in message
        assert leftovers(service.settings) == []
        file = await upload(service.stub, data, sha256=hashlib.sha256(data).hexdigest().upper())
        assert file.status == pb.FILE_STATUS_PROCESSED


async def test_an_upload_over_the_size_limit_is_refused_and_leaves_nothing(
    make_settings: SettingsFactory,
) -> None:
    # 5 MiB parts: on S3 the upload is multipart, with parts stored, by the time the limit is hit.
    settings = make_settings(dataset_max_file_bytes=11 * MiB, object_store_part_size_mib=5)
    async for service in start(settings):
        with as_organization(ORG):
            announced = service.stub.UploadFile(
                upload_requests(b"x", purpose=pb.FILE_PURPOSE_BATCH, expected_bytes=12 * MiB)
            )
            message = await expect_error(announced, grpc.StatusCode.RESOURCE_EXHAUSTED, param="file")
            assert "11534336-byte limit" in message

            streamed = service.stub.UploadFile(
                upload_requests(b"x" * (12 * MiB), purpose=pb.FILE_PURPOSE_BATCH)
            )
            await expect_error(streamed, grpc.StatusCode.RESOURCE_EXHAUSTED, param="file")
            assert not (await service.stub.ListFiles(pb.ListFilesRequest())).files

            # At the limit exactly is fine.
            file = await upload(service.stub, b"x" * (11 * MiB), purpose=pb.FILE_PURPOSE_BATCH)
            assert file.bytes == 11 * MiB
        assert leftovers(settings) == [f"orgs/{ORG}/files/{file.id}"]


async def test_a_client_cancelling_mid_upload_leaves_nothing(make_settings: SettingsFactory) -> None:
    settings = make_settings(object_store_part_size_mib=5)
    block, _ = chat_examples_block(MiB)
    stalled = asyncio.Event()

    async def six_mib_then_stall() -> AsyncIterator[pb.UploadFileRequest]:
        yield METADATA
        for _ in range(6):
            yield pb.UploadFileRequest(chunk=block)
        stalled.set()
        await asyncio.Event().wait()  # the client never finishes

    async for service in start(settings):
        with as_organization(ORG):
            call = service.stub.UploadFile(six_mib_then_stall())
            await stalled.wait()
            # Wait until the upload is visibly under way in the store (a temporary file, or
            # a multipart upload with a part), so that there is something to clean up.
            await eventually(lambda: leftovers(settings) != [])
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            await eventually(lambda: leftovers(settings) == [])
            assert not (await service.stub.ListFiles(pb.ListFilesRequest())).files


async def eventually(condition: object, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_a_record_that_cannot_be_written_takes_its_object_with_it(
    make_settings: SettingsFactory, database_url: str
) -> None:
    if database_url.startswith("postgresql"):
        # The records' own server goes down (the session's shared one must stay up).
        async with records_server_that_goes_down() as (url, go_down):
            await upload_then_lose_the_records(make_settings(dataset_database_url=url), go_down)
    else:

        async def sqlite_table_gone(service: Served) -> None:
            async with service.files.records.database.engine.begin() as connection:
                await connection.execute(text("ALTER TABLE files RENAME TO files_elsewhere"))

        await upload_then_lose_the_records(make_settings(), sqlite_table_gone)


@contextlib.asynccontextmanager
async def records_server_that_goes_down() -> AsyncIterator[tuple[str, Callable[[Served], Awaitable[None]]]]:
    """A Postgres server of the test's own, and a way to stop it while the service runs."""
    with postgres_server() as server:

        async def go_down(_: Served) -> None:
            await asyncio.to_thread(server.stop)

        yield server.create_database(), go_down


async def upload_then_lose_the_records(
    settings: DatasetSettings, lose_records: Callable[[Served], Awaitable[None]]
) -> None:
    async for service in start(settings):
        with as_organization(ORG):
            kept = await upload(service.stub, jsonl(CHAT))
            await lose_records(service)
            await expect_error(upload(service.stub, jsonl(CHAT)), grpc.StatusCode.UNAVAILABLE)
        assert leftovers(service.settings) == [f"orgs/{ORG}/files/{kept.id}"]


# Listing, deleting, restarting.


async def test_listing_is_newest_first_with_cursor_pages_a_purpose_filter_and_an_order(
    service: Served,
) -> None:
    with as_organization(ORG):
        purposes = [pb.FILE_PURPOSE_FINE_TUNE, pb.FILE_PURPOSE_BATCH] * 3
        ids = [(await upload(service.stub, jsonl(CHAT), purpose=purpose)).id for purpose in purposes]
        newest_first = ids[::-1]

        pages, after = [], ""
        while True:
            page = await service.stub.ListFiles(pb.ListFilesRequest(limit=4, after=after))
            pages.append([f.id for f in page.files])
            if not page.has_more:
                break
            after = page.files[-1].id
        assert pages == [newest_first[:4], newest_first[4:]]

        fine_tune = await service.stub.ListFiles(pb.ListFilesRequest(purpose=pb.FILE_PURPOSE_FINE_TUNE))
        assert [f.id for f in fine_tune.files] == newest_first[1::2]
        ascending = await service.stub.ListFiles(pb.ListFilesRequest(order=pb.SORT_ORDER_ASCENDING, limit=2))
        assert [f.id for f in ascending.files] == ids[:2] and ascending.has_more

        for bad in (pb.ListFilesRequest(limit=10_001), pb.ListFilesRequest(limit=-1)):
            await expect_error(service.stub.ListFiles(bad), grpc.StatusCode.INVALID_ARGUMENT, param="limit")
        unknown_cursor = pb.ListFilesRequest(after="file-doesnotexist")
        await expect_error(
            service.stub.ListFiles(unknown_cursor), grpc.StatusCode.INVALID_ARGUMENT, param="after"
        )


async def test_delete_removes_bytes_and_record_and_a_second_delete_is_not_found(service: Served) -> None:
    with as_organization(ORG):
        file = await upload(service.stub, jsonl(CHAT))
        deleted = await service.stub.DeleteFile(pb.DeleteFileRequest(file_id=file.id))
        assert (deleted.file_id, deleted.deleted) == (file.id, True)
        assert leftovers(service.settings) == []
        missing = f"No such File object: {file.id}"
        not_found = grpc.StatusCode.NOT_FOUND
        assert (
            await expect_error(service.stub.DeleteFile(pb.DeleteFileRequest(file_id=file.id)), not_found)
            == missing
        )
        assert (
            await expect_error(service.stub.GetFile(pb.GetFileRequest(file_id=file.id)), not_found) == missing
        )
        assert await expect_error(download(service.stub, file.id), not_found) == missing
        assert not (await service.stub.ListFiles(pb.ListFilesRequest())).files


async def test_another_organizations_file_does_not_exist(service: Served) -> None:
    with as_organization(ORG):
        file = await upload(service.stub, jsonl(CHAT))
    not_found = grpc.StatusCode.NOT_FOUND
    with as_organization("org-b"):
        for file_id in (file.id, "file-doesnotexist"):
            calls = [
                service.stub.GetFile(pb.GetFileRequest(file_id=file_id)),
                service.stub.DeleteFile(pb.DeleteFileRequest(file_id=file_id)),
                download(service.stub, file_id),
                service.stub.GetFileStatistics(pb.GetFileStatisticsRequest(file_id=file_id)),
            ]
            for call in calls:
                # the public API's param (OpenAI's `id`): the gateway passes the answer on unchanged
                message = await expect_error(call, not_found, param="id")
                assert message == f"No such File object: {file_id}"
        assert not (await service.stub.ListFiles(pb.ListFilesRequest())).files
        foreign_cursor = pb.ListFilesRequest(after=file.id)
        await expect_error(
            service.stub.ListFiles(foreign_cursor), grpc.StatusCode.INVALID_ARGUMENT, param="after"
        )
    with as_organization(ORG):
        assert (await download(service.stub, file.id))[1] == jsonl(CHAT)


async def test_records_and_bytes_survive_a_restart(make_settings: SettingsFactory) -> None:
    settings = make_settings()
    data = jsonl(CHAT, CHAT)
    async for service in start(settings):
        with as_organization(ORG):
            file = await upload(service.stub, data)
            bad = await upload(service.stub, b"nope\n")
    async for service in start(settings):
        with as_organization(ORG):
            assert (await service.stub.GetFile(pb.GetFileRequest(file_id=file.id))).file == file
            listed = await service.stub.ListFiles(pb.ListFilesRequest())
            assert list(listed.files) == [bad, file]
            assert await download(service.stub, file.id) == (file, data)


async def test_an_object_store_failing_mid_upload_is_unavailable_and_leaves_no_record(tmp_path: Path) -> None:
    chunk = pb.UploadFileRequest(chunk=chat_examples_block(MiB)[0])
    with moto_s3_server_process() as s3:
        settings = s3_settings(s3.server, "doomed", data_dir=tmp_path, object_store_part_size_mib=5)

        async def store_dies_halfway() -> AsyncIterator[pb.UploadFileRequest]:
            yield METADATA
            for _ in range(6):
                yield chunk
            s3.kill()
            # The next 5 MiB part's upload fails; the service finds the store dead while
            # this client is still writing the 15 MiB after it.
            for _ in range(20):
                yield chunk
            yield END

        async for service in start(settings):
            with as_organization(ORG):
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await service.stub.UploadFile(store_dies_halfway())
                # The status as gRPC gave it, not rpc_error's reading (which calls the case below
                # UNAVAILABLE for every caller): this is about the service. It must not end the
                # call while this client is still writing. If it does, the write its end cuts off
                # fails in gRPC core, and grpcio's aio client then replaces the call's status with
                # its own INTERNAL "Internal error from Core" (StreamUnaryCall._write ->
                # _AioCall.set_internal_error), losing the service's UNAVAILABLE. It used to answer
                # as soon as the store failed: with a pause after the kill (this test's old shape)
                # the status usually came first, but not on a loaded machine; writing on, as here,
                # it lost 4 runs out of 4. The service now reads the rest of the stream before it
                # answers (server._drain), so the status always arrives.
                assert caught.value.code() == grpc.StatusCode.UNAVAILABLE, caught.value
                assert not (await service.stub.ListFiles(pb.ListFilesRequest())).files
