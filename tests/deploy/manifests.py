"""Rendering the kustomize tree offline and walking what it renders.

``kubectl kustomize`` needs no cluster; the rendered objects are plain dicts. The
helpers here give the tests the workloads, their pod specs and containers, and the
environment a container would see, so that each test reads as the rule it checks.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
BASE = K8S / "base"
OVERLAYS = {"dev": K8S / "overlays" / "dev", "prod": K8S / "overlays" / "prod"}
COMPONENTS = ("gpu", "network-policies", "autoscaling", "pdb", "second-base-model")

Manifest = dict[str, Any]

# Kinds whose pod template runs containers.
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job")
GRPC_SERVICES = {"dataset": 50051, "trainer": 50052, "inference": 50053}


def kubectl() -> str | None:
    return shutil.which("kubectl")


@functools.cache
def render(directory: Path) -> tuple[Manifest, ...]:
    """The objects ``kubectl kustomize directory`` renders (cached: each tree renders once)."""
    kubectl_path = kubectl()
    assert kubectl_path is not None
    result = subprocess.run(
        [kubectl_path, "kustomize", str(directory)], check=True, capture_output=True, text=True, timeout=60
    )
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def of_kind(objects: tuple[Manifest, ...], *kinds: str) -> list[Manifest]:
    return [o for o in objects if o["kind"] in kinds]


def named(objects: tuple[Manifest, ...], kind: str, name: str) -> Manifest:
    """The one object of ``kind`` whose name is ``name`` (ignoring a generator's hash suffix)."""
    matches = [o for o in objects if o["kind"] == kind and _base_name(o) == name]
    assert len(matches) == 1, f"expected one {kind} {name}, found {len(matches)}"
    return matches[0]


def _base_name(obj: Manifest) -> str:
    name: str = obj["metadata"]["name"]
    if obj["kind"] in ("ConfigMap", "Secret") and "-" in name:
        stem, _, suffix = name.rpartition("-")
        if len(suffix) == 10 and suffix.isalnum():  # kustomize's content hash
            return stem
    return name


def workloads(objects: tuple[Manifest, ...], *kinds: str) -> list[Manifest]:
    return of_kind(objects, *(kinds or WORKLOAD_KINDS))


def pod_spec(workload: Manifest) -> Manifest:
    spec: Manifest = workload["spec"]["template"]["spec"]
    return spec


def containers(workload: Manifest) -> Iterator[Manifest]:
    spec = pod_spec(workload)
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def config_data(objects: tuple[Manifest, ...]) -> dict[str, str]:
    """The tailor-config ConfigMap's settings."""
    data: dict[str, str] = named(objects, "ConfigMap", "tailor-config")["data"]
    return data


def container_env(objects: tuple[Manifest, ...], container: Manifest) -> dict[str, str]:
    """What the container's environment holds: envFrom ConfigMaps, then env values (secrets as
    ``<secret:name/key>``, field refs as ``<field:path>``), the later winning as in Kubernetes."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            cm = next(
                o
                for o in of_kind(objects, "ConfigMap")
                if o["metadata"]["name"] == source["configMapRef"]["name"]
            )
            env.update(cm.get("data", {}))
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
        elif "secretKeyRef" in var.get("valueFrom", {}):
            ref = var["valueFrom"]["secretKeyRef"]
            env[var["name"]] = f"<secret:{ref['name']}/{ref['key']}>"
        elif "fieldRef" in var.get("valueFrom", {}):
            env[var["name"]] = f"<field:{var['valueFrom']['fieldRef']['fieldPath']}>"
        elif "configMapKeyRef" in var.get("valueFrom", {}):
            env[var["name"]] = f"<configmap:{var['valueFrom']['configMapKeyRef']['key']}>"
    return env


def referenced_secrets(objects: tuple[Manifest, ...]) -> set[str]:
    """Names of the Secrets the rendered pods read (env, envFrom, volumes) and the Ingress serves."""
    names: set[str] = set()
    for workload in workloads(objects):
        for container in containers(workload):
            for source in container.get("envFrom", []):
                if "secretRef" in source:
                    names.add(source["secretRef"]["name"])
            for var in container.get("env", []):
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    names.add(ref["name"])
        for volume in pod_spec(workload).get("volumes", []):
            if "secret" in volume:
                names.add(volume["secret"]["secretName"])
    return names


def labels_match(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())
