"""Fixtures of the deploy tests: the rendered overlays (kubectl's kustomize, offline)."""

from __future__ import annotations

import pytest

from tests.deploy.manifests import BASE, OVERLAYS, Manifest, kubectl, render

needs_kubectl = pytest.mark.skipif(kubectl() is None, reason="kubectl (with kustomize) is not installed")


@pytest.fixture(params=sorted(OVERLAYS))
def overlay(request: pytest.FixtureRequest) -> str:
    """Each overlay's name, dev and prod."""
    if kubectl() is None:
        pytest.skip("kubectl (with kustomize) is not installed")
    return str(request.param)


@pytest.fixture
def objects(overlay: str) -> tuple[Manifest, ...]:
    """What the overlay renders."""
    return render(OVERLAYS[overlay])


@pytest.fixture
def dev() -> tuple[Manifest, ...]:
    if kubectl() is None:
        pytest.skip("kubectl (with kustomize) is not installed")
    return render(OVERLAYS["dev"])


@pytest.fixture
def prod() -> tuple[Manifest, ...]:
    if kubectl() is None:
        pytest.skip("kubectl (with kustomize) is not installed")
    return render(OVERLAYS["prod"])


@pytest.fixture
def base() -> tuple[Manifest, ...]:
    if kubectl() is None:
        pytest.skip("kubectl (with kustomize) is not installed")
    return render(BASE)
