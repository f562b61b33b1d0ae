"""The probes of issue 15 replayed against a real dataset service: who may read, list and delete.

Each call is made on a raw channel with exactly the metadata the test names (no client
interceptor adding a token), so a forged organization header is sent as an attacker
would send it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from services.common.database import sqlite_url
from services.common.grpc_server import GrpcServer
from services.dataset.config import DatasetSettings
from services.dataset.files import FileService
from services.dataset.server import dataset_registration
from tailor.dataset.v1 import dataset_service_pb2 as pb
from tailor.dataset.v1 import dataset_service_pb2_grpc as pb_grpc
from tests.integration.dataset.support import CHAT, jsonl, upload_requests
from tests.support.internal_auth import bearer, service_token, worker_token

ORG_A, ORG_B = "org-a", "org-b"
FORGED = (("x-tailor-organization", ORG_A),)


class Probe:
    """A dataset service on loopback, a raw channel to it, and org-a's files in it."""

    def __init__(self, stub: pb_grpc.DatasetServiceStub, channel: grpc.aio.Channel) -> None:
        self.stub = stub
        self.channel = channel
        self.files: list[str] = []

    async def upload(self, organization: str) -> str:
        token = bearer(service_token("gateway", "dataset", organization))
        response = await self.stub.UploadFile(upload_requests(jsonl(CHAT, CHAT)), metadata=token)
        return response.file.id

    async def listed(self, organization: str) -> list[str]:
        token = bearer(service_token("gateway", "dataset", organization))
        return [f.id for f in (await self.stub.ListFiles(pb.ListFilesRequest(), metadata=token)).files]


@pytest.fixture
async def probe(tmp_path: Path) -> AsyncIterator[Probe]:
    settings = DatasetSettings(
        data_dir=tmp_path / "data", dataset_database_url=sqlite_url(tmp_path / "records" / "dataset.db")
    )
    files = FileService.open(settings)
    server = GrpcServer(settings, "127.0.0.1:0", [dataset_registration(files)])
    port = await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield Probe(pb_grpc.DatasetServiceStub(channel), channel)
    finally:
        await channel.close()
        await server.stop()
        await files.close()


async def code_of(call: Any) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        if hasattr(call, "__aiter__"):
            async for _ in call:
                pass
        else:
            await call
    return caught.value.code()


async def test_a_forged_organization_header_without_a_token_reads_lists_and_deletes_nothing(
    probe: Probe,
) -> None:
    file_id = await probe.upload(ORG_A)
    stub = probe.stub
    for call in (
        stub.DownloadFile(pb.DownloadFileRequest(file_id=file_id), metadata=FORGED),
        stub.GetFile(pb.GetFileRequest(file_id=file_id), metadata=FORGED),
        stub.ListFiles(pb.ListFilesRequest(), metadata=FORGED),
        stub.DeleteFile(pb.DeleteFileRequest(file_id=file_id), metadata=FORGED),
        stub.UploadFile(upload_requests(jsonl(CHAT)), metadata=FORGED),
    ):
        assert await code_of(call) == grpc.StatusCode.UNAUTHENTICATED
    assert await probe.listed(ORG_A) == [file_id]


async def test_a_gateway_token_for_org_b_finds_none_of_org_a_s_files(probe: Probe) -> None:
    file_id = await probe.upload(ORG_A)
    as_b = bearer(service_token("gateway", "dataset", ORG_B))
    # A forged header beside the token changes nothing: the organization is the token's.
    as_b_forging = (*as_b, ("x-tailor-organization", ORG_A))
    for metadata in (as_b, as_b_forging):
        stub = probe.stub
        assert await code_of(
            stub.DownloadFile(pb.DownloadFileRequest(file_id=file_id), metadata=metadata)
        ) == (grpc.StatusCode.NOT_FOUND)
        assert await code_of(stub.GetFile(pb.GetFileRequest(file_id=file_id), metadata=metadata)) == (
            grpc.StatusCode.NOT_FOUND
        )
        assert await code_of(stub.DeleteFile(pb.DeleteFileRequest(file_id=file_id), metadata=metadata)) == (
            grpc.StatusCode.NOT_FOUND
        )
        assert [f.id for f in (await stub.ListFiles(pb.ListFilesRequest(), metadata=metadata)).files] == []
    assert await probe.listed(ORG_A) == [file_id]


@pytest.mark.parametrize("issuer", ["inference", "dataset"])
async def test_an_identity_not_allowed_to_call_the_dataset_service_is_denied(
    probe: Probe, issuer: str
) -> None:
    file_id = await probe.upload(ORG_A)
    metadata = bearer(service_token(issuer, "dataset", ORG_A))
    assert await code_of(
        probe.stub.DownloadFile(pb.DownloadFileRequest(file_id=file_id), metadata=metadata)
    ) == (grpc.StatusCode.PERMISSION_DENIED)
    assert await code_of(probe.stub.DeleteFile(pb.DeleteFileRequest(file_id=file_id), metadata=metadata)) == (
        grpc.StatusCode.PERMISSION_DENIED
    )
    assert await probe.listed(ORG_A) == [file_id]


async def test_the_trainer_may_read_a_job_s_file(probe: Probe) -> None:
    file_id = await probe.upload(ORG_A)
    metadata = bearer(service_token("trainer", "dataset", ORG_A))
    response = await probe.stub.GetFile(pb.GetFileRequest(file_id=file_id), metadata=metadata)
    assert response.file.id == file_id


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(lambda: service_token("gateway", "dataset", ORG_A, issued_at=0), id="expired"),
        pytest.param(lambda: service_token("gateway", "trainer", ORG_A), id="addressed-to-the-trainer"),
        pytest.param(
            lambda: service_token("gateway", "dataset", ORG_A, key=Ed25519PrivateKey.generate()),
            id="unknown-key",
        ),
        pytest.param(lambda: service_token("mallory", "dataset", ORG_A), id="unknown-issuer"),
        pytest.param(lambda: service_token("gateway", "dataset", ORG_A)[:-4] + "AAAA", id="bad-signature"),
        pytest.param(lambda: "not-a-jwt", id="malformed"),
        pytest.param(
            lambda: __import__("jwt").encode(
                {"iss": "gateway", "aud": "dataset", "org": ORG_A, "exp": 2**33, "iat": 0},
                key=None,
                algorithm="none",
            ),
            id="unsigned",
        ),
    ],
)
async def test_bad_tokens_are_unauthenticated_and_logged_without_the_token(
    probe: Probe, token: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    file_id = await probe.upload(ORG_A)
    bad = token()
    capsys.readouterr()
    call = probe.stub.DownloadFile(pb.DownloadFileRequest(file_id=file_id), metadata=bearer(bad))
    assert await code_of(call) == grpc.StatusCode.UNAUTHENTICATED
    logged = capsys.readouterr().out
    assert "internal call refused" in logged and "DownloadFile" in logged
    assert bad not in logged


async def test_health_answers_anonymously_and_reflection_only_authenticated_peers(probe: Probe) -> None:
    health = health_pb2_grpc.HealthStub(probe.channel)
    assert (
        await health.Check(health_pb2.HealthCheckRequest())
    ).status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(probe.channel)
    asked = [reflection_pb2.ServerReflectionRequest(list_services="")]
    for metadata in ((), FORGED, bearer(service_token("gateway", "dataset", issued_at=0))):
        assert await code_of(reflection.ServerReflectionInfo(iter(asked), metadata=metadata)) == (
            grpc.StatusCode.UNAUTHENTICATED
        )
    # A worker is authenticated but has no business listing services.
    as_worker = bearer(worker_token(ORG_A, "ftjob-1", "attempt-1", []))
    assert await code_of(reflection.ServerReflectionInfo(iter(asked), metadata=as_worker)) == (
        grpc.StatusCode.PERMISSION_DENIED
    )
    answers = reflection.ServerReflectionInfo(
        iter(asked), metadata=bearer(service_token("gateway", "dataset"))
    )
    names = [s.name async for r in answers for s in r.list_services_response.service]
    assert "tailor.dataset.v1.DatasetService" in names


async def test_a_worker_token_downloads_its_job_s_files_and_nothing_else(probe: Probe) -> None:
    mine, theirs = await probe.upload(ORG_A), await probe.upload(ORG_A)
    metadata = bearer(worker_token(ORG_A, "ftjob-mine", "attempt-1", [mine]))
    messages = [
        m async for m in probe.stub.DownloadFile(pb.DownloadFileRequest(file_id=mine), metadata=metadata)
    ]
    assert messages and messages[0].file.id == mine
    assert await code_of(
        probe.stub.DownloadFile(pb.DownloadFileRequest(file_id=theirs), metadata=metadata)
    ) == (grpc.StatusCode.PERMISSION_DENIED)
    for call in (
        probe.stub.GetFile(pb.GetFileRequest(file_id=theirs), metadata=metadata),
        probe.stub.ListFiles(pb.ListFilesRequest(), metadata=metadata),
        probe.stub.DeleteFile(pb.DeleteFileRequest(file_id=mine), metadata=metadata),
    ):
        assert await code_of(call) == grpc.StatusCode.PERMISSION_DENIED
    assert sorted(await probe.listed(ORG_A)) == sorted([mine, theirs])
    # Its results go up as its job's organization.
    uploaded = await probe.stub.UploadFile(
        upload_requests(
            b"step,train_loss\n1,0.5\n",
            filename="step_metrics.csv",
            purpose=pb.FILE_PURPOSE_FINE_TUNE_RESULTS,
        ),
        metadata=metadata,
    )
    assert uploaded.file.organization_id == ORG_A
    # Nothing else: a fine-tuning file uploaded by a worker is refused before it is stored.
    refused = probe.stub.UploadFile(upload_requests(jsonl(CHAT, CHAT)), metadata=metadata)
    assert await code_of(refused) == grpc.StatusCode.PERMISSION_DENIED
    assert sorted(await probe.listed(ORG_A)) == sorted([mine, theirs, uploaded.file.id])
