"""The shared gRPC runtime over real gRPC on 127.0.0.1: tenancy, error mapping, deadlines, limits.

A small servicer of the real DatasetService contract stands in for a service: its
methods do what each test needs (echo the organization, raise a domain error, crash,
stream, sleep) so that what is checked is the runtime every service shares.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from services.common.errors import InvalidArgument, NotFound, Unavailable
from services.common.grpc_client import idempotent, open_channel, rpc_error
from services.common.grpc_server import LIVENESS_SERVICE, GrpcServer, ServiceRegistration
from services.common.settings import CommonSettings
from services.common.tenancy import call_context, current_organization, current_request_id
from tailor.dataset.v1 import dataset_service_pb2 as pb
from tailor.dataset.v1 import dataset_service_pb2_grpc as pb_grpc
from tests.support.internal_auth import bearer, service_token

DATASET = pb.DESCRIPTOR.services_by_name["DatasetService"]


class ProbeServicer(pb_grpc.DatasetServiceServicer):
    """Behaves as each test needs, keyed by the file id it is asked for."""

    def __init__(self) -> None:
        self.get_calls = 0
        self.delete_calls = 0
        self.ready = True

    async def GetFile(self, request: pb.GetFileRequest, context: grpc.aio.ServicerContext) -> pb.GetFileResponse:
        self.get_calls += 1
        if request.file_id == "missing":
            raise NotFound(f"no such file: {request.file_id}", param="file_id", code="file_not_found")
        if request.file_id == "crash":
            raise RuntimeError("secret internal detail")
        if request.file_id == "slow":
            await asyncio.sleep(5)
        if request.file_id == "flaky" and self.get_calls < 3:
            raise Unavailable("object store is restarting")
        return pb.GetFileResponse(
            file=pb.File(id=request.file_id, organization_id=current_organization(), filename=current_request_id())
        )

    async def DeleteFile(self, request: pb.DeleteFileRequest, context: grpc.aio.ServicerContext) -> pb.DeleteFileResponse:
        self.delete_calls += 1
        raise Unavailable("always down")

    async def DownloadFile(
        self, request: pb.DownloadFileRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.DownloadFileResponse]:
        yield pb.DownloadFileResponse(file=pb.File(id=request.file_id, organization_id=current_organization()))
        for i in range(3):
            yield pb.DownloadFileResponse(chunk=bytes([i]) * 10)
        if request.file_id == "breaks":
            raise InvalidArgument("range not satisfiable", param="offset")

    async def UploadFile(
        self, request_iterator: AsyncIterator[pb.UploadFileRequest], context: grpc.aio.ServicerContext
    ) -> pb.UploadFileResponse:
        size = 0
        async for message in request_iterator:
            size += len(message.chunk)
        return pb.UploadFileResponse(file=pb.File(bytes=size, organization_id=current_organization()))


@pytest.fixture
def settings(tmp_path) -> CommonSettings:  # type: ignore[no-untyped-def]
    return CommonSettings(data_dir=tmp_path, rpc_timeout_s=1.0, grpc_max_message_bytes=1 << 20)


@pytest.fixture
async def served(settings: CommonSettings):  # type: ignore[no-untyped-def]
    servicer = ProbeServicer()

    async def readiness() -> None:
        if not servicer.ready:
            raise ConnectionError("dependency down")

    server = GrpcServer(
        settings,
        "127.0.0.1:0",
        [ServiceRegistration(DATASET.full_name, pb_grpc.add_DatasetServiceServicer_to_server, servicer)],
        readiness_checks=[readiness],
    )
    port = await server.start()
    channel = open_channel(f"127.0.0.1:{port}", settings, idempotent_methods=idempotent(DATASET.methods_by_name["GetFile"]))
    yield servicer, server, channel
    await channel.close()
    await server.stop()


async def test_health_answers_anonymously_and_reflection_authenticated_peers(served) -> None:  # type: ignore[no-untyped-def]
    servicer, server, channel = served
    health = health_pb2_grpc.HealthStub(channel)
    for name in ("", LIVENESS_SERVICE, DATASET.full_name):
        response = await health.Check(health_pb2.HealthCheckRequest(service=name))
        assert response.status == health_pb2.HealthCheckResponse.SERVING, name

    # The channel sends no token for reflection (no service owns it): refused. With one, answered.
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])):
            pass
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    responses = stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
        metadata=bearer(service_token("gateway", "dataset")),
    )
    names = [s.name async for r in responses for s in r.list_services_response.service]
    assert DATASET.full_name in names and "grpc.health.v1.Health" in names


async def test_readiness_follows_dependency_checks_but_liveness_does_not(served) -> None:  # type: ignore[no-untyped-def]
    servicer, server, channel = served
    servicer.ready = False
    await server._update_readiness()
    health = health_pb2_grpc.HealthStub(channel)
    overall = await health.Check(health_pb2.HealthCheckRequest(service=""))
    liveness = await health.Check(health_pb2.HealthCheckRequest(service=LIVENESS_SERVICE))
    assert overall.status == health_pb2.HealthCheckResponse.NOT_SERVING
    assert liveness.status == health_pb2.HealthCheckResponse.SERVING


async def test_a_call_without_organization_is_refused(served) -> None:  # type: ignore[no-untyped-def]
    _, _, channel = served
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await pb_grpc.DatasetServiceStub(channel).GetFile(pb.GetFileRequest(file_id="x"))
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert rpc_error(caught.value).code == "missing_organization"


async def test_a_malformed_organization_is_refused(served) -> None:  # type: ignore[no-untyped-def]
    _, _, channel = served
    with call_context("../etc", None), pytest.raises(grpc.aio.AioRpcError) as caught:
        await pb_grpc.DatasetServiceStub(channel).GetFile(pb.GetFileRequest(file_id="x"))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert rpc_error(caught.value).param == "organization"


async def test_organization_and_request_id_reach_the_handler(served) -> None:  # type: ignore[no-untyped-def]
    _, _, channel = served
    with call_context("org-a", "req-123"):
        response = await pb_grpc.DatasetServiceStub(channel).GetFile(pb.GetFileRequest(file_id="f"))
    assert response.file.organization_id == "org-a"
    assert response.file.filename == "req-123"


async def test_domain_errors_keep_status_message_code_and_param(served) -> None:  # type: ignore[no-untyped-def]
    _, _, channel = served
    with call_context("org-a", None), pytest.raises(grpc.aio.AioRpcError) as caught:
        await pb_grpc.DatasetServiceStub(channel).GetFile(pb.GetFileRequest(file_id="missing"))
    error = rpc_error(caught.value)
    assert error.status == grpc.StatusCode.NOT_FOUND
    assert error.message == "no such file: missing"
    assert (error.code, error.param) == ("file_not_found", "file_id")


async def test_unexpected_errors_become_internal_without_leaking_details(served) -> None:  # type: ignore[no-untyped-def]
    _, _, channel = served
    with call_context("org-a", "req-9"), pytest.raises(grpc.aio.AioRpcError) as caught:
        await pb_grpc.DatasetServiceStub(channel).GetFile(pb.GetFileRequest(file_id="crash"))
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert "secret" not in caught.value.details()
    assert "req-9" in caught.value.details()


async def test_errors_raised_mid_stream_are_mapped_after_the_items_sent(served) -> None:  # type: ignore[no-untyped-def]
    _, _, channel = served
    received = []
    with call_context("org-a", None), pytest.raises(grpc.aio.AioRpcError) as caught:
        async for message in pb_grpc.DatasetServiceStub(channel).DownloadFile(pb.DownloadFileRequest(file_id="breaks")):
            received.append(message)
    assert len(received) == 4 and received[0].file.organization_id == "org-a"
    assert rpc_error(caught.value).param == "offset"


async def test_client_streaming_calls_carry_the_organization(served) -> None:  # type: ignore[no-untyped-def]
    _, _, channel = served

    async def chunks() -> AsyncIterator[pb.UploadFileRequest]:
        yield pb.UploadFileRequest(metadata=pb.UploadFileMetadata(filename="a.jsonl"))
        for _ in range(4):
            yield pb.UploadFileRequest(chunk=b"x" * 1000)

    with call_context("org-b", None):
        response = await pb_grpc.DatasetServiceStub(channel).UploadFile(chunks())
    assert (response.file.bytes, response.file.organization_id) == (4000, "org-b")


async def test_every_call_gets_the_default_deadline(served) -> None:  # type: ignore[no-untyped-def]
    _, _, channel = served
    loop = asyncio.get_running_loop()
    started = loop.time()
    with call_context("org-a", None), pytest.raises(grpc.aio.AioRpcError) as caught:
        await pb_grpc.DatasetServiceStub(channel).GetFile(pb.GetFileRequest(file_id="slow"))
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert loop.time() - started < 3  # rpc_timeout_s is 1 s; the handler sleeps 5 s


async def test_messages_over_the_size_limit_are_refused(served) -> None:  # type: ignore[no-untyped-def]
    _, _, channel = served

    async def one_huge_chunk() -> AsyncIterator[pb.UploadFileRequest]:
        yield pb.UploadFileRequest(chunk=b"x" * (2 << 20))

    with call_context("org-a", None), pytest.raises(grpc.aio.AioRpcError) as caught:
        await pb_grpc.DatasetServiceStub(channel).UploadFile(one_huge_chunk())
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_only_idempotent_methods_are_retried_on_unavailable(served) -> None:  # type: ignore[no-untyped-def]
    servicer, _, channel = served
    stub = pb_grpc.DatasetServiceStub(channel)
    with call_context("org-a", None):
        response = await stub.GetFile(pb.GetFileRequest(file_id="flaky"))
        assert response.file.id == "flaky" and servicer.get_calls == 3
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.DeleteFile(pb.DeleteFileRequest(file_id="x"))
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert servicer.delete_calls == 1


async def test_stop_reports_not_serving_before_closing(settings: CommonSettings) -> None:
    server = GrpcServer(settings, "127.0.0.1:0")
    port = await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        assert (await health.Check(health_pb2.HealthCheckRequest())).status == health_pb2.HealthCheckResponse.SERVING
        await server.health.enter_graceful_shutdown()
        assert (await health.Check(health_pb2.HealthCheckRequest())).status == health_pb2.HealthCheckResponse.NOT_SERVING
    await server.stop()
