"""/v1/files as the SDK sees it: uploads stream through, objects have OpenAI's shape, lists page."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import openai
import pytest

from tailor.dataset.v1 import dataset_service_pb2 as dataset_pb
from tests.unit.gateway.conftest import KEY_B, Gateway, GatewayFactory

MiB = 1024 * 1024
EXAMPLE = json.dumps(
    {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Ahoy!"}]}
).encode()


def jsonl(lines: int = 10) -> bytes:
    return b"\n".join([EXAMPLE] * lines) + b"\n"


def multipart(parts: list[tuple[str, str | None, bytes]], boundary: str = "tailorboundary") -> bytes:
    """A multipart body from (name, filename or None, value) parts, in the order given."""
    body = b""
    for name, filename, value in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        body += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + value + b"\r\n"
    return body + f"--{boundary}--\r\n".encode()


MULTIPART_TYPE = "multipart/form-data; boundary=tailorboundary"


async def test_upload_returns_openais_file_object(gateway: Gateway) -> None:
    content = jsonl()
    uploaded = await gateway.sdk().files.create(file=("train.jsonl", content), purpose="fine-tune")

    assert uploaded.id.startswith("file-")
    assert uploaded.object == "file"
    assert uploaded.bytes == len(content)
    assert uploaded.filename == "train.jsonl"
    assert uploaded.purpose == "fine-tune"
    assert uploaded.status == "processed"
    assert isinstance(uploaded.created_at, int)
    assert uploaded.status_details is None and uploaded.expires_at is None


@pytest.mark.parametrize("filename", ["données.jsonl", "данные.jsonl", "日本語.jsonl", "emoji-🙂.jsonl"])
async def test_a_filename_in_any_unicode_is_stored_and_returned_exactly(
    gateway: Gateway, filename: str
) -> None:
    # The SDK sends the name as raw UTF-8 in the part's header (RFC 7578); it once was a 500.
    client = gateway.sdk()
    uploaded = await client.files.create(file=(filename, jsonl()), purpose="fine-tune")
    assert uploaded.filename == filename
    assert (await client.files.retrieve(uploaded.id)).filename == filename


async def test_retrieve_content_and_delete(gateway: Gateway) -> None:
    client = gateway.sdk()
    content = jsonl(3)
    uploaded = await client.files.create(file=("train.jsonl", content), purpose="fine-tune")

    assert (await client.files.retrieve(uploaded.id)).model_dump() == uploaded.model_dump()
    downloaded = await client.files.content(uploaded.id)
    assert downloaded.content == content  # the raw bytes, not JSON
    assert downloaded.response.headers["content-type"] == "application/octet-stream"

    deleted = await client.files.delete(uploaded.id)
    assert (deleted.id, deleted.object, deleted.deleted) == (uploaded.id, "file", True)
    with pytest.raises(openai.NotFoundError) as caught:
        await client.files.retrieve(uploaded.id)
    assert caught.value.status_code == 404 and uploaded.id in caught.value.message


async def test_another_organizations_file_is_missing_everywhere(gateway: Gateway) -> None:
    uploaded = await gateway.sdk().files.create(file=("train.jsonl", jsonl()), purpose="fine-tune")
    other = gateway.sdk(KEY_B)
    for attempt in (other.files.retrieve, other.files.content, other.files.delete):
        with pytest.raises(openai.NotFoundError):
            await attempt(uploaded.id)
    assert (await other.files.list()).data == []
    assert uploaded.id in gateway.fakes.dataset.files  # untouched


async def test_list_is_newest_first_and_auto_pagination_ends(gateway: Gateway) -> None:
    client = gateway.sdk()
    ids = [
        (await client.files.create(file=(f"f{i}.jsonl", jsonl(1)), purpose="fine-tune")).id for i in range(5)
    ]

    first = await client.files.list(limit=2)
    assert [f.id for f in first.data] == ids[::-1][:2]
    assert first.has_more is True
    assert first.first_id == ids[4] and first.last_id == ids[3]

    walked = [f.id async for f in client.files.list(limit=2)]
    assert walked == ids[::-1]

    oldest_first = await client.files.list(order="asc", after=ids[1])
    assert [f.id for f in oldest_first.data] == ids[2:]
    assert oldest_first.has_more is False


async def test_a_bad_fine_tuning_file_is_stored_with_the_lines_named(gateway: Gateway) -> None:
    content = EXAMPLE + b"\n" + EXAMPLE + b"\n{not json\n" + EXAMPLE + b"\n"
    uploaded = await gateway.sdk().files.create(file=("bad.jsonl", content), purpose="fine-tune")
    assert uploaded.status == "error"
    assert "line 3" in (uploaded.status_details or "")


async def test_a_fine_tuning_file_must_be_jsonl(gateway: Gateway) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await gateway.sdk().files.create(file=("train.csv", b"a,b\n"), purpose="fine-tune")
    assert caught.value.param == "file" and ".jsonl" in caught.value.message
    assert gateway.fakes.dataset.files == {}


async def test_unknown_purpose_and_missing_parts_are_400(gateway: Gateway) -> None:
    client = gateway.sdk()
    with pytest.raises(openai.BadRequestError) as caught:
        await client.files.create(file=("x.jsonl", b"{}"), purpose="homework")  # type: ignore[arg-type]
    assert caught.value.param == "purpose"
    async with gateway.http() as http:
        only_purpose = await http.post(
            "/v1/files",
            content=multipart([("purpose", None, b"fine-tune")]),
            headers={"content-type": MULTIPART_TYPE},
        )
        assert only_purpose.status_code == 400 and only_purpose.json()["error"]["param"] == "file"
        not_multipart = await http.post("/v1/files", json={"purpose": "fine-tune"})
        assert not_multipart.status_code == 400 and "multipart" in not_multipart.json()["error"]["message"]


async def test_expiry_is_passed_on(gateway: Gateway) -> None:
    uploaded = await gateway.sdk().files.create(
        file=("x.jsonl", jsonl(1)),
        purpose="fine-tune",
        expires_after={"anchor": "created_at", "seconds": 3600},
    )
    assert uploaded.expires_at == uploaded.created_at + 3600


EXPIRY_FIELDS = [("expires_after[anchor]", None, b"created_at"), ("expires_after[seconds]", None, b"7200")]
PURPOSE_FIELD = ("purpose", None, b"fine-tune")
FILE_PART = ("file", "train.jsonl", jsonl(2))


@pytest.mark.parametrize(
    "parts",
    [
        pytest.param([PURPOSE_FIELD, FILE_PART, *EXPIRY_FIELDS], id="expiry after the file (OpenAI's curl)"),
        pytest.param([FILE_PART, *EXPIRY_FIELDS, PURPOSE_FIELD], id="file first"),
        pytest.param([EXPIRY_FIELDS[1], PURPOSE_FIELD, FILE_PART, EXPIRY_FIELDS[0]], id="expiry split"),
        pytest.param([*EXPIRY_FIELDS, PURPOSE_FIELD, FILE_PART], id="expiry first"),
    ],
)
async def test_form_fields_are_taken_in_any_order(
    gateway: Gateway, parts: list[tuple[str, str | None, bytes]]
) -> None:
    async with gateway.http() as http:
        response = await http.post(
            "/v1/files", content=multipart(parts), headers={"content-type": MULTIPART_TYPE}
        )
    assert response.status_code == 200, response.text
    uploaded = response.json()
    assert uploaded["expires_at"] == uploaded["created_at"] + 7200 and uploaded["purpose"] == "fine-tune"


async def test_a_bad_expiry_after_the_file_is_refused_and_nothing_is_stored(gateway: Gateway) -> None:
    parts = [PURPOSE_FIELD, FILE_PART, EXPIRY_FIELDS[0], ("expires_after[seconds]", None, b"60")]
    async with gateway.http() as http:
        response = await http.post(
            "/v1/files", content=multipart(parts), headers={"content-type": MULTIPART_TYPE}
        )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "expires_after.seconds"
    assert gateway.fakes.dataset.files == {}


async def test_purpose_may_follow_a_small_file(gateway: Gateway) -> None:
    body = multipart([("file", "train.jsonl", jsonl(2)), ("purpose", None, b"fine-tune")])
    async with gateway.http() as http:
        response = await http.post("/v1/files", content=body, headers={"content-type": MULTIPART_TYPE})
    assert response.status_code == 200, response.text
    assert response.json()["purpose"] == "fine-tune" and response.json()["bytes"] == len(jsonl(2))


async def test_purpose_after_a_large_file_is_refused(gateway: Gateway) -> None:
    big = b"x" * (5 * MiB)
    body = multipart([("file", "big.jsonl", big), ("purpose", None, b"fine-tune")])
    async with gateway.http() as http:
        response = await http.post("/v1/files", content=body, headers={"content-type": MULTIPART_TYPE})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "purpose"
    assert gateway.fakes.dataset.files == {}


async def test_uploads_stream_to_the_dataset_service_in_bounded_chunks(gateway: Gateway) -> None:
    """The dataset service gets the first chunk while the client is still sending the body."""
    dataset = gateway.fakes.dataset
    head = multipart([("purpose", None, b"fine-tune")]).rsplit(b"--tailorboundary--", 1)[0]
    head += b'--tailorboundary\r\nContent-Disposition: form-data; name="file"; filename="big.jsonl"\r\n\r\n'
    line = EXAMPLE + b"\n"
    block = line * (MiB // len(line) + 1)
    seen_while_sending: list[bool] = []

    async def body() -> AsyncIterator[bytes]:
        yield head
        for _ in range(3):
            yield block
        # wait (bounded) for the dataset service to have received bytes before sending the rest
        try:
            await asyncio.wait_for(dataset.chunk_received.wait(), timeout=5)
            seen_while_sending.append(True)
        except TimeoutError:
            seen_while_sending.append(False)
        for _ in range(3):
            yield block
        yield b"\r\n--tailorboundary--\r\n"

    async with gateway.http() as http:
        response = await http.post("/v1/files", content=body(), headers={"content-type": MULTIPART_TYPE})
    assert response.status_code == 200, response.text
    assert seen_while_sending == [True]
    assert response.json()["bytes"] == 6 * len(block)
    assert len(dataset.chunk_sizes) >= 6
    assert max(dataset.chunk_sizes) <= 4 * MiB


async def test_an_upload_over_the_limit_is_refused_and_nothing_is_stored(
    gateway_with: GatewayFactory,
) -> None:
    async with gateway_with(gateway_max_upload_bytes=2 * MiB) as gateway:
        line = EXAMPLE + b"\n"
        content = line * (3 * MiB // len(line))

        async def unannounced() -> AsyncIterator[bytes]:  # chunked: no Content-Length to refuse early
            yield multipart([("purpose", None, b"fine-tune"), ("file", "big.jsonl", content)])

        async with gateway.http() as http:
            response = await http.post(
                "/v1/files", content=unannounced(), headers={"content-type": MULTIPART_TYPE}
            )
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "file_too_large"
        with pytest.raises(openai.BadRequestError):  # announced size: refused before reading
            await gateway.sdk().files.create(file=("big.jsonl", content), purpose="fine-tune")
        await asyncio.sleep(0.1)
        assert gateway.fakes.dataset.files == {}
        assert gateway.fakes.dataset.aborted_uploads == 1  # the started upstream upload was cancelled


async def test_a_body_that_breaks_off_stores_nothing(gateway: Gateway) -> None:
    body = multipart([("purpose", None, b"fine-tune"), ("file", "t.jsonl", jsonl(50))])
    truncated = body[: len(body) // 2]
    async with gateway.http() as http:
        response = await http.post("/v1/files", content=truncated, headers={"content-type": MULTIPART_TYPE})
    assert response.status_code == 400
    assert "ended before" in response.json()["error"]["message"]
    await asyncio.sleep(0.1)
    assert gateway.fakes.dataset.files == {}


async def test_a_results_file_downloads_in_full(gateway: Gateway) -> None:
    content = bytes(range(256)) * 1024  # several download chunks
    record = gateway.fakes.dataset.add(
        "org-a", "results.csv", content, dataset_pb.FILE_PURPOSE_FINE_TUNE_RESULTS
    )
    async with gateway.http() as http:
        response = await http.get(f"/v1/files/{record.id}/content")
    assert response.status_code == 200
    assert response.content == content
    assert int(response.headers["content-length"]) == len(content)
    listed = await gateway.sdk().files.list(purpose="fine-tune-results")
    assert [f.purpose for f in listed.data] == ["fine-tune-results"]


async def test_list_limit_is_validated(gateway: Gateway) -> None:
    async with gateway.http() as http:
        response = await http.get("/v1/files", params={"limit": 0})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "limit"
