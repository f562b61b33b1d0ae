"""`make up`'s wiring with internal auth: direct gRPC with a forged organization is refused,
the SDK flow through the gateway (upload, fine-tune with a worker, chat) works.

This replays issue 15's probes against the launcher's own processes, ports and keys.
"""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path

import grpc
import openai
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

import tailor.trainer.v1.model_registry_service_pb2 as registry_pb2
import tailor.trainer.v1.model_registry_service_pb2_grpc as registry_grpc
import tailor.trainer.v1.trainer_service_pb2 as trainer_pb2
import tailor.trainer.v1.trainer_service_pb2_grpc as trainer_grpc
from services.common.internal_auth.keys import IDENTITIES
from tailor.dataset.v1 import dataset_service_pb2 as dataset_pb2
from tailor.dataset.v1 import dataset_service_pb2_grpc as dataset_grpc
from tailor.inference.v1 import inference_service_pb2 as inference_pb2
from tailor.inference.v1 import inference_service_pb2_grpc as inference_grpc
from tests.e2e.jobs import wait_until_ended
from tests.support.local_stack import RunningStack, running_stack

pytestmark = pytest.mark.slow

KEY_A, KEY_B = "sk-e2e-auth-org-a-0001", "sk-e2e-auth-org-b-0002"
FORGED = (("x-tailor-organization", "org-a"),)
EXAMPLES = [
    {"messages": [{"role": "user", "content": f"Hi {i}"}, {"role": "assistant", "content": f"Ahoy {i}!"}]}
    for i in range(10)
]


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    data_dir: Path = tmp_path_factory.mktemp("e2e-auth") / "data"
    with running_stack(data_dir, TAILOR_API_KEYS=f"{KEY_A}=org-a,{KEY_B}=org-b") as running:
        yield running


def client(platform: RunningStack, key: str = KEY_A) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{platform.url}/v1", api_key=key)


def address(platform: RunningStack, service: str) -> str:
    return platform.environment[f"TAILOR_{service.upper()}_ADDR"].split(",")[0]


def code_of(call: object) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as caught:
        if hasattr(call, "__next__"):
            for _ in call:  # type: ignore[attr-defined]
                pass
        else:
            call()  # type: ignore[operator]
    return caught.value.code()  # type: ignore[attr-defined]


def test_the_launcher_keeps_one_key_pair_per_service_privately(platform: RunningStack) -> None:
    root = platform.keys.root
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    for identity in IDENTITIES:
        assert stat.S_IMODE(platform.keys.private_key_file(identity).stat().st_mode) == 0o600
        assert (platform.keys.public_dir / f"{identity}.pem").is_file()


def test_the_sdk_flow_through_the_gateway_works_and_forged_direct_calls_are_refused(
    platform: RunningStack,
) -> None:
    sdk = client(platform)
    content = "\n".join(json.dumps(example) for example in EXAMPLES).encode()
    uploaded = sdk.files.create(file=("hi.jsonl", content), purpose="fine-tune")
    assert sdk.files.wait_for_processing(uploaded.id, poll_interval=0.5).status == "processed"
    job = sdk.fine_tuning.jobs.create(
        model="tailor-tiny", training_file=uploaded.id, suffix="auth", hyperparameters={"n_epochs": 1}
    )
    job = wait_until_ended(sdk, job)
    # The worker trained with its launch token: downloaded its file, reported, uploaded results.
    assert job.status == "succeeded", job.error
    assert job.fine_tuned_model and job.result_files
    reply = sdk.chat.completions.create(
        model=job.fine_tuned_model, messages=[{"role": "user", "content": "Hi"}], max_tokens=4
    )
    assert reply.choices[0].message is not None

    with grpc.insecure_channel(address(platform, "dataset")) as channel:
        files = dataset_grpc.DatasetServiceStub(channel)
        request = dataset_pb2.DownloadFileRequest(file_id=uploaded.id)
        assert (
            code_of(files.DownloadFile(request, metadata=FORGED, timeout=10))
            == grpc.StatusCode.UNAUTHENTICATED
        )
        assert (
            code_of(lambda: files.ListFiles(dataset_pb2.ListFilesRequest(), metadata=FORGED, timeout=10))
            == grpc.StatusCode.UNAUTHENTICATED
        )
        assert (
            code_of(
                lambda: files.DeleteFile(
                    dataset_pb2.DeleteFileRequest(file_id=uploaded.id), metadata=FORGED, timeout=10
                )
            )
            == grpc.StatusCode.UNAUTHENTICATED
        )
        # The inference service holds a real key but may not read files.
        assert (
            code_of(
                lambda: files.GetFile(
                    dataset_pb2.GetFileRequest(file_id=uploaded.id),
                    metadata=platform.metadata("dataset", "org-a", issuer="inference"),
                    timeout=10,
                )
            )
            == grpc.StatusCode.PERMISSION_DENIED
        )
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        asked = iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        assert code_of(reflection.ServerReflectionInfo(asked, timeout=10)) == grpc.StatusCode.UNAUTHENTICATED

    with grpc.insecure_channel(address(platform, "trainer")) as channel:
        jobs = trainer_grpc.TrainerServiceStub(channel)
        assert (
            code_of(lambda: jobs.ListJobs(trainer_pb2.ListJobsRequest(), metadata=FORGED, timeout=10))
            == grpc.StatusCode.UNAUTHENTICATED
        )
        registry = registry_grpc.ModelRegistryServiceStub(channel)
        assert (
            code_of(
                lambda: registry.ResolveModel(
                    registry_pb2.ResolveModelRequest(model=job.fine_tuned_model), metadata=FORGED, timeout=10
                )
            )
            == grpc.StatusCode.UNAUTHENTICATED
        )
        # The dataset service's own key does not open the trainer either.
        assert (
            code_of(
                lambda: jobs.ListJobs(
                    trainer_pb2.ListJobsRequest(),
                    metadata=platform.metadata("trainer", "org-a", issuer="dataset"),
                    timeout=10,
                )
            )
            == grpc.StatusCode.PERMISSION_DENIED
        )

    with grpc.insecure_channel(address(platform, "inference")) as channel:
        inference = inference_grpc.InferenceServiceStub(channel)
        assert (
            code_of(
                lambda: inference.ListAdapters(
                    inference_pb2.ListAdaptersRequest(), metadata=FORGED, timeout=10
                )
            )
            == grpc.StatusCode.UNAUTHENTICATED
        )

    # Through the gateway, org-b sees none of it.
    other = client(platform, KEY_B)
    assert uploaded.id not in [f.id for f in other.files.list().data]
    with pytest.raises(openai.NotFoundError):
        other.files.content(uploaded.id)
