"""The training Job the trainer's Kubernetes executor builds, from each overlay's settings.

The trainer builds each fine-tune's batch/v1 Job in code
(:func:`services.trainer.executors.kubernetes.build_job_manifest`), so kustomize never
sees it. Here the trainer's settings are read from what the overlay renders (the
tailor-config ConfigMap plus the trainer container's own env), exactly as the pod would
get them; the Job built from them must validate strictly like every other object, run
restricted, ask for its GPUs as the overlay intends, and reference only a
ServiceAccount and Secrets the overlay provides. The Role in the same overlay must allow
every call the executor makes.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from services.trainer.config import TrainerSettings
from services.trainer.executors.base import WorkerLaunch, new_attempt_id, worker_environment
from services.trainer.executors.kubernetes import build_job_manifest
from tests.deploy.manifests import (
    Manifest,
    config_data,
    container_env,
    named,
    of_kind,
    pod_spec,
    referenced_secrets,
)
from tests.deploy.test_render import K8S_VERSIONS
from tests.deploy.validation import validate_strict

EXECUTOR_SOURCE = Path(__file__).resolve().parents[2] / "services" / "trainer" / "executors" / "kubernetes.py"
# BatchV1Api method -> the (resource, verb) RBAC checks it against
API_PERMISSIONS = {
    "create_namespaced_job": ("jobs", "create"),
    "read_namespaced_job": ("jobs", "get"),
    "read_namespaced_job_status": ("jobs/status", "get"),
    "list_namespaced_job": ("jobs", "list"),
    "delete_namespaced_job": ("jobs", "delete"),
    "list_namespaced_pod": ("pods", "list"),
    "read_namespaced_pod": ("pods", "get"),
    "read_namespaced_pod_log": ("pods/log", "get"),
}


def trainer_settings(
    objects: tuple[Manifest, ...], monkeypatch: pytest.MonkeyPatch, **overrides: str
) -> TrainerSettings:
    """The trainer's settings as its pod in this overlay would read them."""
    trainer = named(objects, "Deployment", "trainer")
    env = container_env(objects, pod_spec(trainer)["containers"][0])
    namespace = trainer["metadata"]["namespace"]
    for name in [n for n in os.environ if n.startswith("TAILOR_")]:
        monkeypatch.delenv(name)
    for name, value in {**env, **overrides}.items():
        if value == "<field:metadata.namespace>":
            value = namespace
        if name.startswith("TAILOR_") and not value.startswith("<"):
            monkeypatch.setenv(name, value)
    return TrainerSettings()


def job_for(settings: TrainerSettings) -> dict[str, Any]:
    launch = WorkerLaunch(job_id="ftjob-abc123", attempt_id=new_attempt_id(), organization_id="org-test")
    environment = worker_environment(
        settings, launch, trainer_addr=settings.trainer_addr, include_secrets=False
    )
    job = build_job_manifest(settings, launch, environment)
    serialized: dict[str, Any] = client.ApiClient().sanitize_for_serialization(job)
    return serialized


def test_the_training_job_validates_strictly(
    objects: tuple[Manifest, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    job = job_for(trainer_settings(objects, monkeypatch))
    for version in K8S_VERSIONS:
        assert validate_strict(job, version) == [], version


def test_the_training_job_runs_restricted_and_as_the_worker_account(
    objects: tuple[Manifest, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = trainer_settings(objects, monkeypatch)
    job = job_for(settings)
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert job["metadata"]["namespace"] == named(objects, "Deployment", "trainer")["metadata"]["namespace"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert pod["automountServiceAccountToken"] is False
    assert pod["enableServiceLinks"] is False
    # the account and the Secrets it names exist in (or are expected by) this overlay
    account = named(objects, "ServiceAccount", pod["serviceAccountName"])
    assert account["automountServiceAccountToken"] is False
    for source in container["envFrom"]:
        assert source["secretRef"]["name"] in referenced_secrets(objects) | {"huggingface-token"}
    # pinned, not the settings' :latest default
    assert container["image"] == config_data(objects)["TAILOR_TRAINER_K8S_IMAGE"]
    assert not container["image"].endswith(":latest")
    # the pod labels the network-policies component selects workers by
    assert pod_labels(job)["app.kubernetes.io/name"] == "tailor-trainer-worker"
    # no credential in the manifest, and no object store at all: checkpoints go through the trainer
    names = {var["name"] for var in container["env"]}
    assert not {"TAILOR_OBJECT_STORE_ACCESS_KEY", "TAILOR_OBJECT_STORE_SECRET_KEY", "TAILOR_API_KEYS"} & names
    assert not [name for name in names if name.startswith("TAILOR_OBJECT_STORE_")]
    assert "tailor-object-store" not in {
        source["secretRef"]["name"] for source in container.get("envFrom") or []
    }
    assert job["spec"]["backoffLimit"] == 0 and job["spec"]["ttlSecondsAfterFinished"] > 0


def test_the_training_job_gets_no_signing_key(
    objects: tuple[Manifest, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    # a worker authenticates with the job-scoped token the trainer gives it, never a service's key
    job = job_for(trainer_settings(objects, monkeypatch))
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    keys = {"TAILOR_INTERNAL_AUTH_PRIVATE_KEY_FILE", "TAILOR_INTERNAL_AUTH_IDENTITY"}
    assert not [var for var in container["env"] if var["name"] in keys]
    assert not [m for m in container.get("volumeMounts", []) if "internal-auth" in m["mountPath"]]
    for volume in pod.get("volumes", []):
        assert "secret" not in volume and "internal-auth" not in json.dumps(volume)


def pod_labels(job: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = job["spec"]["template"]["metadata"]["labels"]
    return labels


def test_the_training_job_asks_for_gpus_as_the_overlay_says(
    overlay: str, objects: tuple[Manifest, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    job = job_for(trainer_settings(objects, monkeypatch))
    pod = job["spec"]["template"]["spec"]
    resources = pod["containers"][0]["resources"]
    if overlay == "dev":
        assert "nvidia.com/gpu" not in resources["limits"]
        assert "nodeSelector" not in pod
        return
    assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"] == "1"
    inference = pod_spec(named(objects, "Deployment", "inference"))
    assert pod["nodeSelector"] == inference["nodeSelector"]
    assert pod["tolerations"] == inference["tolerations"]
    assert resources["requests"]["memory"] == resources["limits"]["memory"] == "40Gi"


def test_a_multi_gpu_job_validates_with_request_equal_to_limit(
    prod: tuple[Manifest, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    job = job_for(trainer_settings(prod, monkeypatch, TAILOR_TRAINER_K8S_GPUS="4"))
    resources = job["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"] == "4"
    for version in K8S_VERSIONS:
        assert validate_strict(job, version) == []


def test_the_role_allows_every_call_the_executor_makes(objects: tuple[Manifest, ...]) -> None:
    called = set(re.findall(r"self\._api\.(\w+)", EXECUTOR_SOURCE.read_text()))
    assert called, "the executor's API calls were not found"
    unknown = called - set(API_PERMISSIONS)
    assert not unknown, f"add the RBAC of {unknown} to API_PERMISSIONS and the Role"
    allowed = {
        (resource, verb)
        for rule in named(objects, "Role", "trainer-jobs")["rules"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    for method in called:
        assert API_PERMISSIONS[method] in allowed, method


def test_the_worker_environment_reaches_the_services(
    objects: tuple[Manifest, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = trainer_settings(objects, monkeypatch)
    env = {
        var["name"]: var.get("value")
        for var in job_for(settings)["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["TAILOR_TRAINER_ADDR"] == "trainer:50052"
    assert env["TAILOR_DATASET_ADDR"].endswith(":50051")
    # the worker never reaches the object store: its checkpoints go through the trainer
    assert not [name for name in env if name.startswith("TAILOR_OBJECT_STORE_")]
    assert env["TAILOR_DATA_DIR"] == settings.trainer_k8s_data_dir
    services = {s["metadata"]["name"] for s in of_kind(objects, "Service")}
    assert {"trainer", "dataset"} <= services
    assert json.loads(env["TAILOR_BASE_MODELS"]).keys() == settings.base_models.keys()
