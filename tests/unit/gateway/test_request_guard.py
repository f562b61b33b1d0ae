"""The guard in front of /v1: key first, then the JSON body limit while the body is read; 405's Allow.

The body checks talk HTTP/1.1 over a raw socket, so that a test can stop sending in the
middle of a body and still read the answer: an answer that comes while the body is
unfinished is one given without reading the rest.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest
from pydantic import ValidationError

from services.common.settings import MiB
from services.gateway.config import GatewaySettings
from tests.unit.gateway.conftest import KEY_A, Gateway, GatewayFactory
from tests.unit.gateway.fakes import BASE_MODEL
from tests.unit.gateway.test_operations import envelope_of

LIMIT = 64 * 1024


async def answer_to_unfinished_body(
    gateway: Gateway, path: str, *, key: str | None, headers: dict[str, str], body: bytes
) -> tuple[int, dict[str, str], dict]:
    """Sends the request line, ``headers`` and ``body`` but never the body's end; returns the answer."""
    address = urlsplit(gateway.url)
    reader, writer = await asyncio.open_connection(address.hostname, address.port)
    try:
        lines = [f"POST {path} HTTP/1.1", f"Host: {address.netloc}", "Content-Type: application/json"]
        lines += [f"Authorization: Bearer {key}"] if key else []
        lines += [f"{name}: {value}" for name, value in headers.items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), timeout=30)
        answer_headers: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            answer_headers[name.strip().lower()] = value.strip()
        content = await reader.readexactly(int(answer_headers["content-length"]))
        return int(status_line.split()[1]), answer_headers, json.loads(content)
    finally:
        writer.close()


def chunked(data: bytes, size: int = 8192) -> bytes:
    """``data`` in HTTP chunks, without the terminating empty chunk."""
    pieces = (data[start : start + size] for start in range(0, len(data), size))
    return b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces)


async def test_a_wrong_key_is_refused_before_a_byte_of_the_body(gateway: Gateway) -> None:
    for key in (None, "sk-not-a-key-at-all"):
        status, headers, body = await answer_to_unfinished_body(
            gateway, "/v1/chat/completions", key=key, headers={"Content-Length": str(50 * MiB)}, body=b""
        )
        assert status == 401 and envelope_of(body)["code"] == "invalid_api_key"
        assert headers["www-authenticate"] == "Bearer" and headers["x-request-id"]


async def test_an_announced_body_over_the_limit_is_413_before_it_is_read(
    gateway_with: GatewayFactory,
) -> None:
    async with gateway_with(gateway_max_json_body_bytes=LIMIT) as gateway:
        status, headers, body = await answer_to_unfinished_body(
            gateway, "/v1/chat/completions", key=KEY_A, headers={"Content-Length": str(LIMIT + 1)}, body=b""
        )
        error = envelope_of(body)
        assert status == 413
        assert (error["type"], error["code"]) == ("invalid_request_error", "request_too_large")
        assert str(LIMIT) in error["message"]
        assert headers["x-ratelimit-limit-requests"]  # an authenticated answer


async def test_a_chunked_body_is_413_as_soon_as_it_passes_the_limit(gateway_with: GatewayFactory) -> None:
    async with gateway_with(gateway_max_json_body_bytes=LIMIT) as gateway:
        # the limit and one byte more, and then nothing: the body never ends
        status, _, body = await answer_to_unfinished_body(
            gateway,
            "/v1/fine_tuning/jobs",
            key=KEY_A,
            headers={"Transfer-Encoding": "chunked"},
            body=chunked(b'{"model": "' + b"m" * LIMIT),
        )
        assert status == 413 and envelope_of(body)["code"] == "request_too_large"
        # under the limit, a chunked body is read whole and reaches the route
        async with gateway.http() as http:
            async def small_body() -> AsyncIterator[bytes]:  # no length known: sent chunked
                yield b'{"model": "' + b"m" * 100 + b'"}'

            response = await http.post(
                "/v1/fine_tuning/jobs", content=small_body(), headers={"content-type": "application/json"}
            )
            assert response.status_code == 400 and envelope_of(response.json())["param"] == "training_file"


async def test_a_body_at_the_limit_reaches_inference_whatever_its_characters(gateway: Gateway) -> None:
    """The largest accepted body, made of the characters that grow most on their way to gRPC, still fits."""
    limit = gateway.settings.gateway_max_json_body_bytes

    def request(description: str) -> bytes:
        tool = {"type": "function", "function": {"name": "f", "description": description}}
        body = {"model": BASE_MODEL, "messages": [{"role": "user", "content": "hi"}], "tools": [tool]}
        return json.dumps(body, ensure_ascii=False).encode()

    emoji = "\N{SLIGHTLY SMILING FACE}"  # 4 bytes of UTF-8; json.dumps escapes it into 12
    padding = (limit - len(request(""))) // 4
    body = request(emoji * padding)
    body = request(emoji * padding + "x" * (limit - len(body)))
    assert len(body) == limit
    async with gateway.http() as http:
        headers = {"content-type": "application/json"}
        accepted = await http.post("/v1/chat/completions", content=body, headers=headers)
        assert accepted.status_code == 200, accepted.text
        assert len(gateway.fakes.inference.requests[-1].chat.tools_json) > 2 * limit
        refused = await http.post("/v1/chat/completions", content=body + b" ", headers=headers)
        assert refused.status_code == 413 and envelope_of(refused.json())["code"] == "request_too_large"


async def test_the_file_upload_keeps_its_own_limit(gateway_with: GatewayFactory) -> None:
    async with gateway_with(gateway_max_json_body_bytes=LIMIT) as gateway:
        line = json.dumps({"messages": [{"role": "user", "content": "x" * 100}]}) + "\n"
        data = (line * (4 * LIMIT // len(line))).encode()
        uploaded = await gateway.sdk().files.create(file=("big.jsonl", data), purpose="fine-tune")
        assert uploaded.bytes == len(data) > LIMIT


async def test_health_readiness_metrics_and_the_document_need_no_key(gateway: Gateway) -> None:
    async with gateway.http(key=None) as http:
        for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
            assert (await http.get(path, follow_redirects=True)).status_code == 200, path
        document = (await http.get("/openapi.json")).json()
        assert document["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
        assert document["paths"]["/v1/models"]["get"]["security"] == [{"HTTPBearer": []}]


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("OPTIONS", "/v1/files", "GET, POST"),
        ("PUT", "/v1/files/file-abc", "DELETE, GET"),
        ("GET", "/v1/chat/completions", "POST"),
        ("DELETE", "/v1/fine_tuning/jobs/ftjob-abc/cancel", "POST"),
    ],
)
async def test_a_wrong_method_is_405_with_every_allowed_method(
    gateway: Gateway, method: str, path: str, allow: str
) -> None:
    async with gateway.http() as http:
        response = await http.request(method, path)
        assert response.status_code == 405
        assert response.headers["allow"] == allow
        assert envelope_of(response.json())["message"] == f"Method not allowed ({method} {path})"


def test_the_json_limit_must_leave_room_in_a_grpc_message() -> None:
    with pytest.raises(ValidationError, match="a third of TAILOR_GRPC_MAX_MESSAGE_BYTES"):
        GatewaySettings(gateway_max_json_body_bytes=4 * MiB, grpc_max_message_bytes=8 * MiB)
    assert GatewaySettings(gateway_max_json_body_bytes=4 * MiB, grpc_max_message_bytes=12 * MiB)
