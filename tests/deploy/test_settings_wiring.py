"""The manifests set only settings the services have, with values the services accept.

A setting renamed in a service's ``config.py`` would otherwise be silently ignored in the
cluster (settings ignore unknown variables), and a malformed JSON value would only show
as a crash-looping pod. Each service's settings class is loaded from exactly the
environment its container gets in each overlay.
"""

from __future__ import annotations

import os

import pytest
from pydantic_settings import BaseSettings

from services.dataset.config import DatasetSettings
from services.gateway.config import GatewaySettings
from services.inference.config import InferenceSettings
from services.trainer.config import TrainerSettings
from services.trainer.worker.config import WorkerSettings
from tests.deploy.manifests import Manifest, config_data, container_env, named, pod_spec, workloads

SETTINGS: dict[str, type[BaseSettings]] = {
    "gateway": GatewaySettings,
    "dataset": DatasetSettings,
    "trainer": TrainerSettings,
    "inference": InferenceSettings,
}
KNOWN = {
    f"TAILOR_{name.upper()}" for cls in (*SETTINGS.values(), WorkerSettings) for name in cls.model_fields
}


def tailor_names(objects: tuple[Manifest, ...]) -> set[str]:
    names = {key for key in config_data(objects) if key.startswith("TAILOR_")}
    for workload in workloads(objects):
        for container in pod_spec(workload)["containers"]:
            names |= {var["name"] for var in container.get("env", []) if var["name"].startswith("TAILOR_")}
    return names


def test_every_tailor_variable_is_a_setting(objects: tuple[Manifest, ...]) -> None:
    unknown = tailor_names(objects) - KNOWN
    assert not unknown, f"no service has these settings: {sorted(unknown)}"


@pytest.mark.parametrize("service", sorted(SETTINGS))
def test_each_service_accepts_its_environment(
    service: str, objects: tuple[Manifest, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    deployment = named(objects, "Deployment", service)
    env = container_env(objects, pod_spec(deployment)["containers"][0])
    for name in [n for n in os.environ if n.startswith("TAILOR_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        if value == "<field:metadata.namespace>":
            value = deployment["metadata"]["namespace"]
        elif value.startswith("<secret:"):
            continue  # the Secret's value is the cluster's; its presence is test_policies' business
        if name.startswith("TAILOR_"):
            monkeypatch.setenv(name, value.replace("$(POSTGRES_PASSWORD)", "password"))
    settings = SETTINGS[service]()
    listen = getattr(settings, f"{service}_listen", None)
    port = int(listen.rpartition(":")[2]) if listen is not None else settings.gateway_port
    assert port in {p["containerPort"] for p in pod_spec(deployment)["containers"][0]["ports"]}
    metrics_port = getattr(settings, f"{service}_metrics_port", 0)
    if metrics_port:
        assert deployment["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == str(
            metrics_port
        )
