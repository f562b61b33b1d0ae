"""The Kubernetes executor without a cluster: the Job manifest it builds, and how it drives the API."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from pydantic import SecretStr

from services.trainer.config import TrainerSettings
from services.trainer.executors import WorkerLaunch, worker_environment
from services.trainer.executors.kubernetes import KubernetesExecutor, build_job_manifest, job_name

# The oldest Kubernetes minor the manifests are checked against (gRPC probes and Job TTLs are GA there).
KUBERNETES_VERSION = "1.30.0"
LAUNCH = WorkerLaunch(job_id="ftjob-AbC123", attempt_id="attempt-0123456789abcdef", organization_id="org-a")


@pytest.fixture
def settings(tmp_path: Any) -> TrainerSettings:
    return TrainerSettings(
        data_dir=tmp_path,
        trainer_executor="kubernetes",
        trainer_addr="tailor-trainer.tailor.svc:50052",
        object_store_endpoint="minio.storage.svc:9000",
        object_store_access_key=SecretStr("AKIA-not-in-the-manifest"),
        object_store_secret_key=SecretStr("secret-not-in-the-manifest"),
        trainer_k8s_gpus=2,
        trainer_k8s_node_selector={"nvidia.com/gpu.present": "true"},
        trainer_k8s_tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        trainer_k8s_env_from_secrets=["huggingface-token", "tailor-extra"],
    )


def manifest(settings: TrainerSettings) -> dict[str, Any]:
    environment = worker_environment(
        settings, LAUNCH, trainer_addr=settings.trainer_addr, include_secrets=False
    )
    job = build_job_manifest(settings, LAUNCH, environment)
    return client.ApiClient().sanitize_for_serialization(job)


def test_the_job_manifest_is_valid_kubernetes(settings: TrainerSettings) -> None:
    kubernetes_validate.validate(manifest(settings), KUBERNETES_VERSION, strict=True)
    cpu_only = settings.model_copy(update={"trainer_k8s_gpus": 0, "trainer_k8s_tolerations": []})
    kubernetes_validate.validate(manifest(cpu_only), KUBERNETES_VERSION, strict=True)


def test_the_job_runs_one_attempt_once_and_is_bounded_in_time(settings: TrainerSettings) -> None:
    job = manifest(settings)
    assert (job["apiVersion"], job["kind"]) == ("batch/v1", "Job")
    assert job["metadata"]["name"] == "tailor-train-0123456789abcdef" == job_name(LAUNCH)
    assert job["metadata"]["namespace"] == "tailor"
    spec = job["spec"]
    assert spec["backoffLimit"] == 0  # retries are the trainer's, from the last checkpoint
    assert spec["activeDeadlineSeconds"] == settings.trainer_k8s_active_deadline_s
    assert spec["ttlSecondsAfterFinished"] == settings.trainer_k8s_ttl_after_finished_s
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["serviceAccountName"] == "tailor-trainer-worker"
    assert pod["automountServiceAccountToken"] is False


def test_the_job_is_labelled_with_its_fine_tuning_job(settings: TrainerSettings) -> None:
    job = manifest(settings)
    for labels in (job["metadata"]["labels"], job["spec"]["template"]["metadata"]["labels"]):
        assert labels["app.kubernetes.io/part-of"] == "tailor"
        assert labels["app.kubernetes.io/component"] == "training-worker"
        assert labels["tailor.dev/fine-tuning-job"] == LAUNCH.job_id
        assert labels["tailor.dev/attempt"] == LAUNCH.attempt_id


def test_the_worker_gets_its_identity_and_settings_but_secrets_only_from_secrets(
    settings: TrainerSettings,
) -> None:
    container = manifest(settings)["spec"]["template"]["spec"]["containers"][0]
    env = {item["name"]: item["value"] for item in container["env"]}
    assert env["TAILOR_WORKER_JOB_ID"] == LAUNCH.job_id
    assert env["TAILOR_WORKER_ATTEMPT_ID"] == LAUNCH.attempt_id
    assert env["TAILOR_WORKER_ORGANIZATION"] == "org-a"
    assert env["TAILOR_TRAINER_ADDR"] == "tailor-trainer.tailor.svc:50052"
    # no object store setting at all: the worker moves checkpoints through the trainer
    assert not [name for name in env if name.startswith("TAILOR_OBJECT_STORE_")]
    assert env["TAILOR_DATA_DIR"] == "/data" and env["HOME"] == "/tmp"
    assert "TAILOR_OBJECT_STORE_ACCESS_KEY" not in env and "TAILOR_OBJECT_STORE_SECRET_KEY" not in env
    assert "not-in-the-manifest" not in str(manifest(settings))
    assert [source["secretRef"]["name"] for source in container["envFrom"]] == [
        "huggingface-token",
        "tailor-extra",
    ]
    assert container["command"] == ["python", "-m", "services.trainer.worker"]
    assert container["image"] == settings.trainer_k8s_image


def test_gpus_are_requested_as_much_as_limited_and_scheduled_on_gpu_nodes(settings: TrainerSettings) -> None:
    pod = manifest(settings)["spec"]["template"]["spec"]
    resources = pod["containers"][0]["resources"]
    assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"] == "2"
    assert resources["limits"]["memory"] == resources["requests"]["memory"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]

    cpu_pod = manifest(settings.model_copy(update={"trainer_k8s_gpus": 0}))["spec"]["template"]["spec"]
    assert "nvidia.com/gpu" not in cpu_pod["containers"][0]["resources"]["limits"]


def test_the_pod_runs_unprivileged_on_a_read_only_root(settings: TrainerSettings) -> None:
    pod = manifest(settings)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = pod["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    for path in ("/tmp", "/data", "/dev/shm"):
        assert "emptyDir" in volumes[mounts[path]]
    assert volumes[mounts["/dev/shm"]]["emptyDir"]["medium"] == "Memory"


class FakeBatchApi:
    """The three BatchV1Api calls the executor makes, against a dict of Jobs."""

    def __init__(self) -> None:
        self.jobs: dict[tuple[str, str], client.V1Job] = {}
        self.deleted: list[tuple[str, str, str]] = []

    def create_namespaced_job(self, namespace: str, body: client.V1Job) -> client.V1Job:
        self.jobs[(namespace, body.metadata.name)] = body
        return body

    def read_namespaced_job_status(self, name: str, namespace: str) -> client.V1Job:
        if (namespace, name) not in self.jobs:
            raise ApiException(status=404, reason="Not Found")
        return self.jobs[(namespace, name)]

    def delete_namespaced_job(self, name: str, namespace: str, **options: Any) -> None:
        if self.jobs.pop((namespace, name), None) is None:
            raise ApiException(status=404, reason="Not Found")
        self.deleted.append((namespace, name, options["propagation_policy"]))


async def test_the_executor_creates_watches_and_deletes_jobs(settings: TrainerSettings) -> None:
    api = FakeBatchApi()
    executor = KubernetesExecutor(settings, api=api)  # type: ignore[arg-type]
    await executor.launch(LAUNCH, {"TAILOR_WORKER_JOB_ID": LAUNCH.job_id})
    created = api.jobs[("tailor", job_name(LAUNCH))]
    assert created.spec.backoff_limit == 0

    assert (await executor.status(LAUNCH)).running
    created.status = client.V1JobStatus(active=1)
    assert (await executor.status(LAUNCH)).running
    created.status = client.V1JobStatus(
        failed=1, conditions=[client.V1JobCondition(type="Failed", status="True", reason="DeadlineExceeded")]
    )
    failed = await executor.status(LAUNCH)
    assert not failed.running and "DeadlineExceeded" in failed.detail
    created.status = client.V1JobStatus(succeeded=1)
    succeeded = await executor.status(LAUNCH)
    assert not succeeded.running and succeeded.exit_code == 0

    await executor.stop(LAUNCH)
    assert api.deleted == [("tailor", job_name(LAUNCH), "Foreground")]
    await executor.stop(LAUNCH)  # already gone: fine
    gone = await executor.status(LAUNCH)
    assert not gone.running and "no longer exists" in gone.detail
