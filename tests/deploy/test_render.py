"""Every overlay (and every component on its own) renders, and every rendered object is
valid Kubernetes: strict schema validation (unknown fields are errors) against 1.30 and
the newest version kubernetes-validate ships.
"""

from __future__ import annotations

import os
from pathlib import Path

import kubernetes_validate
import pytest

from tests.deploy.conftest import needs_kubectl
from tests.deploy.manifests import BASE, COMPONENTS, K8S, OVERLAYS, Manifest, render
from tests.deploy.validation import validate_strict

# The oldest minor we support (preStop sleep actions and grpc probes need it), and the newest.
K8S_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())


def validate_all(objects: tuple[Manifest, ...]) -> list[str]:
    """Every problem with ``objects`` in each version, as 'version kind/name path: message'."""
    problems = []
    for version in K8S_VERSIONS:
        for obj in objects:
            where = f"{version} {obj['kind']}/{obj['metadata']['name']}"
            try:
                problems.extend(f"{where} {message}" for message in validate_strict(obj, version))
            except kubernetes_validate.SchemaNotFoundError:
                problems.append(f"{where}: no schema (a CRD?)")
    return problems


def test_the_newest_schema_is_newer_than_the_oldest_supported() -> None:
    assert tuple(int(p) for p in K8S_VERSIONS[1].split(".")) > (1, 30, 0)


def test_the_cached_validator_agrees_with_the_library() -> None:
    # a typo the strict schema must catch, and what the library itself says about it
    bad = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {
            "containers": [{"name": "c", "image": "i:1", "securityContext": {"readOnlyRootFileSystem": True}}]
        },
    }
    assert any("readOnlyRootFileSystem" in m for m in validate_strict(bad, "1.30.0"))
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, "1.30.0", strict=True)
    good = {**bad, "spec": {"containers": [{"name": "c", "image": "i:1"}]}}
    assert validate_strict(good, "1.30.0") == []
    kubernetes_validate.validate(good, "1.30.0", strict=True)


@needs_kubectl
@pytest.mark.parametrize("target", ["base", *sorted(OVERLAYS)])
def test_renders_and_validates_strictly(target: str) -> None:
    objects = render(BASE if target == "base" else OVERLAYS[target])
    assert len(objects) > 20
    assert validate_all(objects) == []


@needs_kubectl
@pytest.mark.parametrize("component", COMPONENTS)
def test_each_component_applies_to_the_base_alone(component: str, tmp_path: Path) -> None:
    # an overlay of just the base and this component, as a user composing their own would write
    overlay = tmp_path / component
    overlay.mkdir()
    # kustomize refuses absolute paths to directories
    base = os.path.relpath(BASE, overlay)
    path = os.path.relpath(K8S / "components" / component, overlay)
    (overlay / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\n"
        "kind: Kustomization\n"
        f"resources: [{base}]\n"
        f"components: [{path}]\n"
    )
    objects = render(overlay)
    assert objects != render(BASE)
    assert validate_all(objects) == []
