"""components/second-base-model: one inference Deployment per base model, in an overlay as a user writes it.

The overlay here is the base with every component (the second base's first, so that the
gpu component reaches its Deployment too) and TAILOR_BASE_MODELS listing both bases. It
is validated strictly, checked against every rule of test_policies.py that applies to any
overlay, and then against what makes two bases work: disjoint Deployments, a headless
Service each, the gateway discovering both, each replica's base configured, and the
policies, budget, autoscaler and GPU patch selecting the right pods.
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Callable

import pytest

from services.gateway.inference_pools import parse_target
from services.inference.config import InferenceSettings
from tests.deploy import test_policies
from tests.deploy.conftest import needs_kubectl
from tests.deploy.manifests import (
    BASE,
    K8S,
    Manifest,
    config_data,
    container_env,
    labels_match,
    named,
    of_kind,
    pod_spec,
    render,
    workloads,
)
from tests.deploy.test_render import validate_all

COMPONENT = "second-base-model"
BASE_MODELS = {
    "tailor-tiny": {"source": "builtin:tailor-tiny", "lora_learning_rate": 0.002, "lora_rank": 8},
    "tiny-qwen2.5": {"source": "builtin:tiny-qwen2.5"},
}
INFERENCE = ("inference", "inference-second")
NAMESPACE = """apiVersion: v1
kind: Namespace
metadata:
  name: tailor-two-bases
  labels:
    pod-security.kubernetes.io/enforce: restricted
    pod-security.kubernetes.io/enforce-version: v1.30
"""


def _rules() -> list[Callable[[tuple[Manifest, ...]], None]]:
    """The rules of test_policies.py that hold for any overlay (they take only the rendered objects)."""
    return [
        rule
        for name, rule in vars(test_policies).items()
        if name.startswith("test_") and list(inspect.signature(rule).parameters) == ["objects"]
    ]


@pytest.fixture(scope="module")
def objects(tmp_path_factory: pytest.TempPathFactory) -> tuple[Manifest, ...]:
    overlay = tmp_path_factory.mktemp("two-bases")
    components = [COMPONENT, "gpu", "network-policies", "autoscaling", "pdb"]
    relative = [os.path.relpath(K8S / "components" / c, overlay) for c in components]
    (overlay / "namespace.yaml").write_text(NAMESPACE)
    (overlay / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\n"
        "kind: Kustomization\n"
        "namespace: tailor-two-bases\n"
        "labels:\n"
        "  - pairs: {app.kubernetes.io/part-of: tailor, app.kubernetes.io/managed-by: kustomize}\n"
        "    includeSelectors: false\n"
        "    includeTemplates: true\n"
        f"resources: [namespace.yaml, {os.path.relpath(BASE, overlay)}]\n"
        f"components: [{', '.join(relative)}]\n"
        "configMapGenerator:\n"
        "  - name: tailor-config\n"
        "    behavior: merge\n"
        "    literals:\n"
        f"      - 'TAILOR_BASE_MODELS={json.dumps(BASE_MODELS)}'\n"
    )
    return render(overlay)


@needs_kubectl
def test_it_renders_and_validates_strictly(objects: tuple[Manifest, ...]) -> None:
    assert validate_all(objects) == []


@needs_kubectl
@pytest.mark.parametrize("rule", _rules(), ids=lambda rule: rule.__name__)
def test_every_overlay_rule_holds(
    rule: Callable[[tuple[Manifest, ...]], None], objects: tuple[Manifest, ...]
) -> None:
    rule(objects)


def _pod_labels(objects: tuple[Manifest, ...], name: str) -> dict[str, str]:
    labels: dict[str, str] = named(objects, "Deployment", name)["spec"]["template"]["metadata"]["labels"]
    return labels


@needs_kubectl
def test_each_base_has_its_own_deployment_and_headless_service(objects: tuple[Manifest, ...]) -> None:
    for name in INFERENCE:
        selector = named(objects, "Deployment", name)["spec"]["selector"]["matchLabels"]
        others = [n for n in INFERENCE if n != name]
        # disjoint: neither Deployment (nor the first's HPA, through its scale selector) counts the other's pods
        assert labels_match(selector, _pod_labels(objects, name))
        assert not any(labels_match(selector, _pod_labels(objects, other)) for other in others)
        headless = named(objects, "Service", f"{name}-headless")["spec"]
        assert headless["clusterIP"] == "None" and headless["publishNotReadyAddresses"] is False
        assert labels_match(headless["selector"], _pod_labels(objects, name))
        assert not any(labels_match(headless["selector"], _pod_labels(objects, other)) for other in others)


@needs_kubectl
def test_the_gateway_discovers_both_headless_services(objects: tuple[Manifest, ...]) -> None:
    gateway = named(objects, "Deployment", "gateway")
    target = parse_target(container_env(objects, pod_spec(gateway)["containers"][0])["TAILOR_INFERENCE_ADDR"])
    assert target.static == ()
    assert target.dns == tuple((f"{name}-headless", 50053) for name in INFERENCE)
    ports = {
        (s["metadata"]["name"], p["port"]) for s in of_kind(objects, "Service") for p in s["spec"]["ports"]
    }
    assert all(dns in ports for dns in target.dns)


@needs_kubectl
def test_each_deployment_serves_a_configured_base_of_its_own(
    objects: tuple[Manifest, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    served = []
    for name in INFERENCE:
        env = container_env(objects, pod_spec(named(objects, "Deployment", name))["containers"][0])
        for variable in [v for v in os.environ if v.startswith("TAILOR_")]:
            monkeypatch.delenv(variable)
        for variable, value in env.items():
            if variable.startswith("TAILOR_") and not value.startswith("<secret:"):
                monkeypatch.setenv(variable, value)
        settings = InferenceSettings()
        assert settings.inference_base_model in settings.base_models, name
        served.append(settings.inference_base_model)
    assert served == list(BASE_MODELS)
    assert json.loads(config_data(objects)["TAILOR_BASE_MODELS"]) == BASE_MODELS


@needs_kubectl
def test_policies_budget_autoscaler_and_gpu_select_the_right_pods(objects: tuple[Manifest, ...]) -> None:
    pods = {name: _pod_labels(objects, name) for name in INFERENCE}
    gateway_pods = _pod_labels(objects, "gateway")
    inference_policy = named(objects, "NetworkPolicy", "inference")["spec"]
    gateway_policy = named(objects, "NetworkPolicy", "gateway")["spec"]
    minio_policy = named(objects, "NetworkPolicy", "minio")["spec"]
    budget = named(objects, "PodDisruptionBudget", "inference")["spec"]
    for name, labels in pods.items():
        # both bases' replicas: reachable from the gateway only, allowed to MinIO, one budget
        assert labels_match(inference_policy["podSelector"]["matchLabels"], labels), name
        (grpc_rule,) = [
            r for r in inference_policy["ingress"] if {"protocol": "TCP", "port": 50053} in r["ports"]
        ]
        assert [labels_match(p["podSelector"]["matchLabels"], gateway_pods) for p in grpc_rule["from"]] == [
            True
        ]
        assert any(
            labels_match(peer["podSelector"]["matchLabels"], labels)
            for rule in gateway_policy["egress"]
            if {"protocol": "TCP", "port": 50053} in rule["ports"]
            for peer in rule["to"]
        ), name
        assert any(
            labels_match(peer.get("podSelector", {}).get("matchLabels", {"-": "-"}), labels)
            for rule in minio_policy["ingress"]
            for peer in rule["from"]
        ), name
        assert labels_match(budget["selector"]["matchLabels"], labels), name
        # the gpu component reached both Deployments
        container = pod_spec(named(objects, "Deployment", name))["containers"][0]
        assert container["resources"]["limits"]["nvidia.com/gpu"] == "1", name
        assert container["image"].startswith("ghcr.io/tailor/inference-gpu:"), name
    # the first base's autoscaler scales its own Deployment, whose selector leaves the second's pods out
    hpa = named(objects, "HorizontalPodAutoscaler", "inference")["spec"]
    assert hpa["scaleTargetRef"]["name"] == "inference"
    assert {w["metadata"]["name"] for w in workloads(objects, "Deployment") if "serving" in str(w)} >= set(
        INFERENCE
    )
