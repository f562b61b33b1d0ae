"""Every failure is OpenAI's envelope with the right status; request ids, health, metrics, OpenAPI."""

from __future__ import annotations


import grpc
import openai
import pytest

from services.gateway.errors import from_rpc_error
from services.gateway.models.serving import OpenAIServingModels
from tests.support.processes import free_port
from tests.unit.gateway.conftest import Gateway, GatewayFactory
from tests.unit.gateway.fakes import BASE_MODEL


def envelope_of(body: dict) -> dict:
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, 400),
        (grpc.StatusCode.FAILED_PRECONDITION, 400),
        (grpc.StatusCode.ALREADY_EXISTS, 400),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, 400),
        (grpc.StatusCode.UNAUTHENTICATED, 401),
        (grpc.StatusCode.PERMISSION_DENIED, 403),
        (grpc.StatusCode.NOT_FOUND, 404),
        (grpc.StatusCode.UNAVAILABLE, 503),
        (grpc.StatusCode.DEADLINE_EXCEEDED, 504),
        (grpc.StatusCode.INTERNAL, 500),
        (grpc.StatusCode.UNKNOWN, 500),
    ],
)
def test_grpc_status_maps_to_http_status(code: grpc.StatusCode, status: int) -> None:
    error = from_rpc_error(
        grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details="internal detail")
    )
    assert error.status == status
    assert status != 409
    if status >= 500:
        assert error.type == "server_error" and "internal detail" not in error.message
    else:
        assert error.message == "internal detail"


async def test_framework_failures_are_the_envelope_not_fastapi_defaults(gateway: Gateway) -> None:
    async with gateway.http() as http:
        unknown = await http.get("/v1/nothing-here")
        assert unknown.status_code == 404
        assert envelope_of(unknown.json())["message"] == "Invalid URL (GET /v1/nothing-here)"

        wrong_method = await http.put("/v1/models")
        assert wrong_method.status_code == 405 and envelope_of(wrong_method.json())

        not_json = await http.post(
            "/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert not_json.status_code == 400
        assert "JSON" in envelope_of(not_json.json())["message"]

        not_an_object = await http.post("/v1/chat/completions", json=["model", "messages"])
        assert not_an_object.status_code == 400
        assert envelope_of(not_an_object.json())["param"] is None

        missing = await http.post(
            "/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}]}
        )
        assert missing.status_code == 400
        error = envelope_of(missing.json())
        assert (error["param"], error["code"]) == ("model", "missing_required_parameter")

        wrong_type = await http.get("/v1/files", params={"limit": "many"})
        assert wrong_type.status_code == 400 and envelope_of(wrong_type.json())["param"] == "limit"


async def test_an_unexpected_error_is_a_generic_500(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(self: object, caller: object) -> None:
        raise RuntimeError("secret internal state")

    monkeypatch.setattr(OpenAIServingModels, "list_models", broken)
    with pytest.raises(openai.InternalServerError) as caught:
        await gateway.sdk().models.list()
    assert caught.value.status_code == 500 and caught.value.type == "server_error"
    assert "secret" not in caught.value.message
    assert caught.value.response.headers["x-request-id"]


async def test_an_upstream_that_is_down_is_503_and_not_ready(gateway: Gateway) -> None:
    async with gateway.http() as http:
        ready = await http.get("/readyz")
        assert ready.status_code == 200 and set(ready.json()["upstreams"].values()) == {"SERVING"}
        await gateway.fakes.server.stop()
        with pytest.raises(openai.InternalServerError) as caught:
            await gateway.sdk().models.list()
        assert caught.value.status_code == 503
        assert (await http.get("/readyz")).status_code == 503
        assert (await http.get("/healthz")).status_code == 200


async def test_every_response_has_a_request_id_and_a_given_one_is_kept(
    gateway: Gateway, capsys: pytest.CaptureFixture[str]
) -> None:
    async with gateway.http() as http:
        for method, path in (
            ("GET", "/v1/models"),
            ("GET", "/nope"),
            ("GET", "/healthz"),
            ("GET", "/metrics"),
        ):
            response = await http.request(method, path)
            assert response.headers["x-request-id"].startswith("req_"), path
        async with gateway.http(key=None) as anonymous:
            assert (await anonymous.get("/v1/models")).headers["x-request-id"]
        mine = await http.get("/v1/models/tailor-tiny", headers={"x-request-id": "trace-1234"})
        assert mine.headers["x-request-id"] == "trace-1234"
        hostile = await http.get("/v1/models", headers={"x-request-id": "not a token" + "x" * 200})
        assert hostile.headers["x-request-id"].startswith("req_")
    with pytest.raises(openai.NotFoundError) as caught:
        await gateway.sdk().files.retrieve("file-missing")
    assert caught.value.request_id and caught.value.request_id.startswith("req_")
    # the id travels to the internal services and into their log lines
    logs = capsys.readouterr().out
    assert any("ResolveModel" in line and "trace-1234" in line for line in logs.splitlines())


async def test_access_log_line_per_request(gateway: Gateway, capsys: pytest.CaptureFixture[str]) -> None:
    await gateway.sdk().chat.completions.create(model=BASE_MODEL, messages=[{"role": "user", "content": "x"}])
    lines = [
        line
        for line in capsys.readouterr().out.splitlines()
        if "request " in line or "[info     ] request" in line
    ]
    access = [line for line in lines if "path=/v1/chat/completions" in line]
    assert len(access) == 1
    for field in (
        "method=POST",
        "status=200",
        "organization=org-a",
        "duration_ms=",
        "route=/v1/chat/completions",
    ):
        assert field in access[0]


async def test_metrics_count_requests_by_route(gateway: Gateway) -> None:
    await gateway.sdk().models.list()
    async with gateway.http(key=None) as http:
        text = (await http.get("/metrics", follow_redirects=True)).text
    assert 'tailor_gateway_http_requests_total{method="GET",route="/v1/models",status="200"}' in text
    assert "tailor_gateway_http_request_duration_seconds_bucket" in text


async def test_openapi_document_lists_the_routes_and_no_422(gateway: Gateway) -> None:
    async with gateway.http(key=None) as http:
        document = (await http.get("/openapi.json")).json()
    paths = document["paths"]
    for path in (
        "/v1/files",
        "/v1/files/{file_id}/content",
        "/v1/fine_tuning/jobs/{job_id}/checkpoints",
        "/v1/models/{model}",
        "/v1/chat/completions",
        "/v1/completions",
    ):
        assert path in paths
    responses = [op["responses"] for item in paths.values() for op in item.values()]
    assert all("422" not in r and "400" in r for r in responses)
    assert "multipart/form-data" in paths["/v1/files"]["post"]["requestBody"]["content"]
    assert document["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


async def test_an_unreachable_inference_replica_is_503_and_not_ready(gateway_with: GatewayFactory) -> None:
    nobody_listens = f"127.0.0.1:{free_port()}"
    async with gateway_with(inference_addr=nobody_listens) as gateway:
        with pytest.raises(openai.InternalServerError) as caught:
            await gateway.sdk().chat.completions.create(
                model=BASE_MODEL, messages=[{"role": "user", "content": "x"}]
            )
        assert caught.value.status_code == 503
        async with gateway.http(key=None) as http:
            ready = await http.get("/readyz")
        assert ready.status_code == 503 and ready.json()["upstreams"]["inference"] == "UNAVAILABLE"
