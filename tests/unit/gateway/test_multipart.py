"""The streaming multipart reader: events in body order wherever the chunks are cut; bad bodies are 400."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from services.gateway.errors import OpenAIError
from services.gateway.files.multipart import FileData, FileEnd, FileStart, FormField, MultipartReader
from tests.unit.gateway.test_files import MULTIPART_TYPE, multipart


async def chunks(body: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


async def read(body: bytes, size: int, **options: int) -> list[object]:
    reader = MultipartReader(MULTIPART_TYPE, chunks(body, size), **options)
    return [event async for event in reader.events()]


@pytest.mark.parametrize("size", [1, 7, 64, 100_000])
async def test_events_in_body_order_whatever_the_chunking(size: int) -> None:
    content = b"line one\r\n--tailorboundar\r\nnot the end\n" * 20
    body = multipart([("purpose", None, b"fine-tune"), ("file", "t.jsonl", content), ("extra", None, b"x")])
    events = await read(body, size)
    assert events[0] == FormField("purpose", "fine-tune")
    assert events[1] == FileStart("file", "t.jsonl")
    data = [e for e in events if isinstance(e, FileData)]
    assert b"".join(e.data for e in data) == content
    assert events[-2:] == [FileEnd(), FormField("extra", "x")]


async def test_a_body_without_its_closing_boundary_is_refused() -> None:
    body = multipart([("purpose", None, b"fine-tune"), ("file", "t.jsonl", b"abc")])
    with pytest.raises(OpenAIError, match="ended before"):
        await read(body[:-10], 16)


async def test_an_oversized_field_is_refused() -> None:
    with pytest.raises(OpenAIError, match="longer than 8 bytes"):
        await read(multipart([("purpose", None, b"x" * 100)]), 16, max_field_bytes=8)


@pytest.mark.parametrize(
    "content_type", ["application/json", "multipart/form-data", "text/plain; boundary=x"]
)
async def test_other_content_types_are_refused(content_type: str) -> None:
    with pytest.raises(OpenAIError, match="multipart/form-data") as caught:
        MultipartReader(content_type, chunks(b"", 1))
    assert caught.value.status == 400


async def test_a_part_without_a_name_is_refused() -> None:
    body = b"--tailorboundary\r\nContent-Disposition: form-data\r\n\r\nx\r\n--tailorboundary--\r\n"
    with pytest.raises(OpenAIError, match="Content-Disposition"):
        await read(body, 5)


@pytest.mark.parametrize(
    ("disposition", "filename"),
    [
        ('form-data; name="file"; filename="données.jsonl"', "données.jsonl"),
        ('form-data; name="file"; filename="emoji-🙂.jsonl"', "emoji-🙂.jsonl"),
        # RFC 5987's extended form wins over the plain one (RFC 6266 4.3)
        (
            "form-data; name=\"file\"; filename=\"x.jsonl\"; filename*=UTF-8''%E6%97%A5%E6%9C%AC.jsonl",
            "日本.jsonl",
        ),
        ('form-data; name="file"; filename="quote\\"d.jsonl"', 'quote"d.jsonl'),
    ],
)
async def test_filenames_in_any_unicode_are_read_exactly(disposition: str, filename: str) -> None:
    body = (
        f"--tailorboundary\r\nContent-Disposition: {disposition}\r\n\r\n".encode()
        + b"abc\r\n--tailorboundary--\r\n"
    )
    events = await read(body, 5)
    assert events[0] == FileStart("file", filename)
