"""What a platform engineer expects of every rendered object, checked on both overlays.

Each test is one rule: resources, probes on the health service, the security context,
graceful shutdown, labels and scrape annotations, h2c on gRPC ports, service account
tokens, the trainer's RBAC, secrets never inlined, pinned images, GPU requests, network
policies, autoscaling, disruption budgets and the Ingress.
"""

from __future__ import annotations

import base64
import json
import re

from services.gateway.auth import key_digest, parse_hashed_keys
from services.gateway.inference_pools import parse_target
from tests.deploy.manifests import (
    GRPC_SERVICES,
    Manifest,
    config_data,
    container_env,
    containers,
    labels_match,
    named,
    of_kind,
    pod_spec,
    referenced_secrets,
    workloads,
)

SERVICES = ("gateway", *GRPC_SERVICES)
LONG_RUNNING = ("Deployment", "StatefulSet")
# variables that hold a credential: never a literal value, never in a ConfigMap
SECRET_NAME = re.compile(r"PASSWORD|_SECRET_KEY$|_ACCESS_KEY$|TOKEN$|API_KEYS$|ROOT_USER$")
PINNED_IMAGE = re.compile(r"^[\w./-]+(:[\w.-]+)(@sha256:[0-9a-f]{64})?$|^[\w./-]+@sha256:[0-9a-f]{64}$")


def app_name(obj: Manifest) -> str:
    name: str = obj["metadata"]["labels"]["app.kubernetes.io/name"]
    return name


def service_container(objects: tuple[Manifest, ...], name: str) -> Manifest:
    return pod_spec(named(objects, "Deployment", name))["containers"][0]


# -- resources -----------------------------------------------------------------------------------


def test_every_container_has_cpu_and_memory_requests_and_limits(objects: tuple[Manifest, ...]) -> None:
    for workload in workloads(objects):
        for container in containers(workload):
            resources = container.get("resources", {})
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(kind, {})), (workload["metadata"]["name"], kind)


# -- probes --------------------------------------------------------------------------------------


def test_grpc_services_probe_the_health_service_on_their_numeric_port(objects: tuple[Manifest, ...]) -> None:
    for name, port in GRPC_SERVICES.items():
        container = service_container(objects, name)
        readiness = container["readinessProbe"]["grpc"]
        liveness = container["livenessProbe"]["grpc"]
        # readiness asks the overall status (service ""), liveness the "liveness" service
        assert readiness == {"port": port} or readiness == {"port": port, "service": ""}, name
        assert liveness == {"port": port, "service": "liveness"}, name
        assert container["startupProbe"]["grpc"]["port"] == port
        assert {"name": "grpc", "containerPort": port, "protocol": "TCP"} in container["ports"]


def test_the_gateway_probes_readyz_and_healthz(objects: tuple[Manifest, ...]) -> None:
    container = service_container(objects, "gateway")
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": 8000}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": 8000}


def test_every_long_running_container_has_readiness_and_liveness(objects: tuple[Manifest, ...]) -> None:
    for workload in workloads(objects, *LONG_RUNNING):
        for container in containers(workload):
            assert "readinessProbe" in container and "livenessProbe" in container, workload["metadata"][
                "name"
            ]


def seconds(probe: Manifest) -> int:
    """How long a probe tolerates failure: periodSeconds x failureThreshold (Kubernetes defaults 10 x 3)."""
    return int(probe.get("periodSeconds", 10)) * int(probe.get("failureThreshold", 3))


def test_inference_startup_probe_covers_model_load(overlay: str, objects: tuple[Manifest, ...]) -> None:
    startup = service_container(objects, "inference")["startupProbe"]
    assert startup["grpc"] == {"port": 50053, "service": "liveness"}
    # tailor-tiny builds on CPU in under a minute; a 7-8B model downloads and loads in minutes
    assert seconds(startup) >= (900 if overlay == "prod" else 300)


# -- security ------------------------------------------------------------------------------------


def test_every_pod_runs_restricted(objects: tuple[Manifest, ...]) -> None:
    for workload in workloads(objects):
        name = workload["metadata"]["name"]
        pod = pod_spec(workload)
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert pod["securityContext"]["runAsUser"] > 0, name
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for container in containers(workload):
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["capabilities"] == {"drop": ["ALL"]}, name
            assert context.get("privileged", False) is False, name
            # with a read-only root, /tmp must be a writable emptyDir
            tmp = [m for m in container.get("volumeMounts", []) if m["mountPath"] == "/tmp"]
            assert tmp and "emptyDir" in volumes[tmp[0]["name"]], name


def test_only_the_trainer_gets_a_service_account_token(objects: tuple[Manifest, ...]) -> None:
    for account in of_kind(objects, "ServiceAccount"):
        expected = account["metadata"]["name"] == "trainer"
        assert account["automountServiceAccountToken"] is expected, account["metadata"]["name"]
    for workload in workloads(objects):
        expected = workload["metadata"]["name"] == "trainer"
        assert pod_spec(workload)["automountServiceAccountToken"] is expected, workload["metadata"]["name"]
    assert pod_spec(named(objects, "Deployment", "trainer"))["serviceAccountName"] == "trainer"


def test_the_trainer_role_allows_exactly_what_the_executor_needs(objects: tuple[Manifest, ...]) -> None:
    role = named(objects, "Role", "trainer-jobs")
    rules = {(tuple(r["apiGroups"]), tuple(r["resources"])): sorted(r["verbs"]) for r in role["rules"]}
    assert rules == {
        (("batch",), ("jobs",)): sorted(["create", "get", "list", "watch", "delete"]),
        (("batch",), ("jobs/status",)): ["get"],
        (("",), ("pods",)): sorted(["get", "list", "watch"]),
        (("",), ("pods/log",)): ["get"],
    }
    assert not of_kind(objects, "ClusterRole", "ClusterRoleBinding")
    binding = named(objects, "RoleBinding", "trainer-jobs")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "trainer-jobs",
    }
    account = named(objects, "ServiceAccount", "trainer")
    namespace = account["metadata"]["namespace"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "trainer", "namespace": namespace}]


def test_secrets_are_never_inlined(objects: tuple[Manifest, ...]) -> None:
    for workload in workloads(objects):
        for container in containers(workload):
            for var in container.get("env", []):
                if SECRET_NAME.search(var["name"]):
                    assert "valueFrom" in var, (workload["metadata"]["name"], var["name"])
                # a URL may embed a password only through $(VAR) expansion of a secretKeyRef
                assert "://" not in var.get("value", "") or "@" not in var["value"] or "$(" in var["value"]
    for config in of_kind(objects, "ConfigMap"):
        assert not any(SECRET_NAME.search(key) for key in config.get("data", {})), config["metadata"]["name"]


def test_dev_generates_its_secrets_and_prod_expects_them(
    dev: tuple[Manifest, ...], prod: tuple[Manifest, ...]
) -> None:
    generated = {o["metadata"]["name"] for o in of_kind(dev, "Secret")}
    assert referenced_secrets(dev) <= generated
    # prod creates no Secret: they exist in the cluster beforehand (docs/deploy.md lists them)
    assert of_kind(prod, "Secret") == []
    assert referenced_secrets(prod) == {
        "minio-credentials",
        "tailor-object-store",
        "postgres-credentials",
        "gateway-api-keys",
        "huggingface-token",
        "internal-auth-gateway",
        "internal-auth-dataset",
        "internal-auth-trainer",
        "internal-auth-inference",
    }


def test_the_object_store_secret_keeps_the_name_training_jobs_use(objects: tuple[Manifest, ...]) -> None:
    # the trainer passes Secret names to the Jobs it builds; kustomize cannot rewrite them
    for name in json.loads(config_data(objects)["TAILOR_TRAINER_K8S_ENV_FROM_SECRETS"]):
        assert name in referenced_secrets(objects) or name == "huggingface-token"
        for secret in of_kind(objects, "Secret"):
            assert not secret["metadata"]["name"].startswith(f"{name}-")


# -- shutdown ------------------------------------------------------------------------------------


def test_pods_drain_before_they_stop(objects: tuple[Manifest, ...]) -> None:
    for workload in workloads(objects, *LONG_RUNNING):
        name = workload["metadata"]["name"]
        pod = pod_spec(workload)
        for container in containers(workload):
            pre_stop = container["lifecycle"]["preStop"]
            if "sleep" in pre_stop:
                sleep = pre_stop["sleep"]["seconds"]
                grace = float(container_env(objects, container).get("TAILOR_GRPC_SHUTDOWN_GRACE_S", 0))
                # the kubelet's SIGKILL must come after the sleep and the service's own drain
                assert pod["terminationGracePeriodSeconds"] > sleep + grace, name
            else:
                assert name == "postgres" and "exec" in pre_stop


# -- labels, annotations, services ---------------------------------------------------------------


def test_every_object_and_pod_carries_the_recommended_labels(objects: tuple[Manifest, ...]) -> None:
    for obj in objects:
        labels = obj["metadata"].get("labels", {})
        if obj["kind"] in ("Namespace",):
            continue
        assert labels.get("app.kubernetes.io/part-of") == "tailor", (obj["kind"], obj["metadata"]["name"])
        if obj["kind"] not in ("ConfigMap", "Secret", "NetworkPolicy"):
            assert "app.kubernetes.io/name" in labels, (obj["kind"], obj["metadata"]["name"])
    for workload in workloads(objects):
        template_labels = workload["spec"]["template"]["metadata"]["labels"]
        assert template_labels["app.kubernetes.io/part-of"] == "tailor"
        assert template_labels["app.kubernetes.io/name"] == app_name(workload)
        if workload["kind"] != "Job":
            assert workload["spec"]["selector"]["matchLabels"] == {
                "app.kubernetes.io/name": app_name(workload)
            }


def test_services_are_scraped_on_their_metrics_port(objects: tuple[Manifest, ...]) -> None:
    config = config_data(objects)
    for name in SERVICES:
        workload = named(objects, "Deployment", name)
        annotations = workload["spec"]["template"]["metadata"]["annotations"]
        port = "8000" if name == "gateway" else config[f"TAILOR_{name.upper()}_METRICS_PORT"]
        assert annotations == {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": port,
            "prometheus.io/path": "/metrics",
        }
        assert int(port) in {p["containerPort"] for p in pod_spec(workload)["containers"][0]["ports"]}


def test_grpc_ports_are_named_grpc_and_h2c(objects: tuple[Manifest, ...]) -> None:
    for name, port in GRPC_SERVICES.items():
        services = [
            s
            for s in of_kind(objects, "Service")
            if s["spec"]["selector"] == {"app.kubernetes.io/name": name}
        ]
        assert services, name
        for service in services:
            assert service["spec"]["ports"] == [
                {
                    "name": "grpc",
                    "port": port,
                    "targetPort": "grpc",
                    "protocol": "TCP",
                    "appProtocol": "kubernetes.io/h2c",
                }
            ]


def test_service_links_are_off_and_no_service_shadows_a_setting(objects: tuple[Manifest, ...]) -> None:
    # a Service named tailor-x would inject TAILOR_X_PORT=tcp://... into pods that take links
    for workload in workloads(objects):
        assert pod_spec(workload)["enableServiceLinks"] is False, workload["metadata"]["name"]
    for service in of_kind(objects, "Service"):
        assert not service["metadata"]["name"].lower().startswith("tailor"), service["metadata"]["name"]


def test_the_router_discovers_inference_through_a_headless_service(objects: tuple[Manifest, ...]) -> None:
    # one dns:/// target per inference Deployment (one per base model), inference-headless first
    target = parse_target(config_data(objects)["TAILOR_INFERENCE_ADDR"])
    assert target.static == () and target.dns[0] == ("inference-headless", GRPC_SERVICES["inference"])
    for name, port in target.dns:
        headless = named(objects, "Service", name)
        assert headless["spec"]["clusterIP"] == "None"
        assert headless["spec"]["publishNotReadyAddresses"] is False
        assert port in {p["port"] for p in headless["spec"]["ports"]}


def test_service_addresses_point_at_services_that_exist(objects: tuple[Manifest, ...]) -> None:
    config = config_data(objects)
    ports = {
        (s["metadata"]["name"], p["port"]) for s in of_kind(objects, "Service") for p in s["spec"]["ports"]
    }
    for key in ("TAILOR_DATASET_ADDR", "TAILOR_TRAINER_ADDR", "TAILOR_OBJECT_STORE_ENDPOINT"):
        host, _, port = config[key].rpartition(":")
        assert (host, int(port)) in ports, key
    for name, port in GRPC_SERVICES.items():
        assert config[f"TAILOR_{name.upper()}_LISTEN"] == f"0.0.0.0:{port}"


def test_images_are_pinned(objects: tuple[Manifest, ...]) -> None:
    images = [c["image"] for w in workloads(objects) for c in containers(w)]
    images.append(config_data(objects)["TAILOR_TRAINER_K8S_IMAGE"])
    for image in images:
        assert PINNED_IMAGE.match(image), image
        assert not image.endswith(":latest"), image


# -- state: MinIO and Postgres -------------------------------------------------------------------


def test_minio_keeps_its_data_and_reads_credentials_from_a_secret(objects: tuple[Manifest, ...]) -> None:
    minio = named(objects, "StatefulSet", "minio")
    assert minio["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    env = container_env(objects, pod_spec(minio)["containers"][0])
    assert env["MINIO_ROOT_USER"].startswith("<secret:minio-credentials")
    assert env["MINIO_ROOT_PASSWORD"].startswith("<secret:minio-credentials")
    assert re.search(r":RELEASE\.\d{4}-", pod_spec(minio)["containers"][0]["image"])


def test_a_job_creates_the_bucket_with_an_abort_multipart_rule(objects: tuple[Manifest, ...]) -> None:
    job = named(objects, "Job", "minio-setup")
    script = " ".join(pod_spec(job)["containers"][0]["args"])
    assert 'mc mb --ignore-existing "tailor/$BUCKET"' in script
    assert "AbortIncompleteMultipartUpload" in script and "mc ilm rule import" in script
    assert job["spec"]["ttlSecondsAfterFinished"] > 0 and job["spec"]["backoffLimit"] > 0
    env = container_env(objects, pod_spec(job)["containers"][0])
    assert env["BUCKET"] == "<configmap:TAILOR_OBJECT_STORE_BUCKET>"


def test_records_live_in_postgres_reached_with_a_secret_password(objects: tuple[Manifest, ...]) -> None:
    postgres = named(objects, "StatefulSet", "postgres")
    assert postgres["spec"]["replicas"] == 1
    assert postgres["spec"]["volumeClaimTemplates"][0]["spec"]["accessModes"] == ["ReadWriteOnce"]
    for service, database in (("dataset", "tailor_dataset"), ("trainer", "tailor_trainer")):
        env = container_env(objects, service_container(objects, service))
        assert env["POSTGRES_PASSWORD"] == "<secret:" + env["POSTGRES_PASSWORD"].split(":", 1)[1]
        url = env[f"TAILOR_{service.upper()}_DATABASE_URL"]
        assert url == f"postgresql+asyncpg://tailor:$(POSTGRES_PASSWORD)@postgres:5432/{database}"
        # $(VAR) expands only from variables defined earlier in the list
        names = [v["name"] for v in service_container(objects, service)["env"]]
        assert names.index("POSTGRES_PASSWORD") < names.index(f"TAILOR_{service.upper()}_DATABASE_URL")
    init = named(objects, "ConfigMap", "postgres-init")["data"]["10-databases.sql"]
    assert "CREATE DATABASE tailor_dataset" in init and "CREATE DATABASE tailor_trainer" in init


def test_one_trainer_replaced_never_doubled(objects: tuple[Manifest, ...]) -> None:
    trainer = named(objects, "Deployment", "trainer")
    assert trainer["spec"]["replicas"] == 1
    assert trainer["spec"]["strategy"] == {"type": "Recreate"}
    env = container_env(objects, service_container(objects, "trainer"))
    assert env["TAILOR_TRAINER_K8S_NAMESPACE"] == "<field:metadata.namespace>"
    assert env["TAILOR_TRAINER_EXECUTOR"] == "kubernetes"


# -- GPUs ----------------------------------------------------------------------------------------


def test_dev_runs_on_cpu_with_tailor_tiny_and_one_replica_each(dev: tuple[Manifest, ...]) -> None:
    config = config_data(dev)
    assert config["TAILOR_INFERENCE_ENGINE"] == "hf"
    assert "TAILOR_BASE_MODELS" not in config  # the default: tailor-tiny
    assert config["TAILOR_TRAINER_K8S_GPUS"] == "0"
    for workload in workloads(dev, *LONG_RUNNING):
        assert workload["spec"]["replicas"] == 1
        for container in containers(workload):
            assert not any("gpu" in r for r in container["resources"]["limits"])


def test_prod_inference_has_a_whole_gpu_with_request_equal_to_limit(prod: tuple[Manifest, ...]) -> None:
    inference = named(prod, "Deployment", "inference")
    container = pod_spec(inference)["containers"][0]
    assert (
        container["resources"]["requests"]["nvidia.com/gpu"]
        == container["resources"]["limits"]["nvidia.com/gpu"]
        == "1"
    )
    assert container["resources"]["requests"]["memory"] == container["resources"]["limits"]["memory"]
    assert pod_spec(inference)["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod_spec(inference)[
        "tolerations"
    ]
    assert container["image"].startswith("ghcr.io/tailor/inference-gpu:")
    config = config_data(prod)
    assert config["TAILOR_INFERENCE_ENGINE"] == "vllm"
    # the training Job template asks for the same, through the trainer's settings
    assert config["TAILOR_TRAINER_K8S_GPUS"] == "1"
    assert json.loads(config["TAILOR_TRAINER_K8S_NODE_SELECTOR"]) == pod_spec(inference)["nodeSelector"]
    assert json.loads(config["TAILOR_TRAINER_K8S_TOLERATIONS"]) == pod_spec(inference)["tolerations"]
    # no other pod asks for a GPU
    for workload in workloads(prod):
        if workload is not inference:
            for c in containers(workload):
                assert "nvidia.com/gpu" not in c["resources"].get("limits", {}), workload["metadata"]["name"]


def test_prod_inference_memory_covers_the_lora_cpu_cache(prod: tuple[Manifest, ...]) -> None:
    config = config_data(prod)
    memory_gib = int(service_container(prod, "inference")["resources"]["limits"]["memory"].removesuffix("Gi"))
    # 8B adapter at the max rank, bf16: 41.9M params per 16 ranks x 2 B
    adapter_gib = 41.9e6 * (int(config["TAILOR_MAX_LORA_RANK"]) / 16) * 2 / 2**30
    assert memory_gib > int(config["TAILOR_INFERENCE_MAX_CPU_LORAS"]) * adapter_gib + 16
    assert int(config["TAILOR_INFERENCE_MAX_CPU_LORAS"]) >= int(config["TAILOR_INFERENCE_MAX_LORAS"])
    # one rank limit for trainer and inference: no per-service copy that could drift
    assert not any(name.endswith("_MAX_LORA_RANK") and name != "TAILOR_MAX_LORA_RANK" for name in config)


# -- network policies ----------------------------------------------------------------------------


def policies(objects: tuple[Manifest, ...]) -> list[Manifest]:
    return of_kind(objects, "NetworkPolicy")


def test_network_policies_deny_by_default_and_allow_dns(objects: tuple[Manifest, ...]) -> None:
    deny = named(objects, "NetworkPolicy", "deny-all")
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    dns = named(objects, "NetworkPolicy", "allow-dns")["spec"]
    assert dns["podSelector"] == {} and dns["policyTypes"] == ["Egress"]
    assert {"protocol": "UDP", "port": 53} in dns["egress"][0]["ports"]


def test_only_the_gateway_accepts_traffic_from_anywhere(objects: tuple[Manifest, ...]) -> None:
    open_to_all = [
        p["metadata"]["name"]
        for p in policies(objects)
        for rule in p["spec"].get("ingress", [])
        if "from" not in rule
    ]
    assert open_to_all == ["gateway"]


def test_each_grpc_service_accepts_only_its_callers(objects: tuple[Manifest, ...]) -> None:
    expected = {
        "dataset": {"gateway", "trainer", "tailor-trainer-worker"},
        # inference pods (every base model's: component=serving) resolve adapters in the registry
        "trainer": {"gateway", "tailor-trainer-worker", "component=serving"},
        "inference": {"gateway"},
    }
    for name, callers in expected.items():
        policy = named(objects, "NetworkPolicy", name)
        port_rules = [
            r
            for r in policy["spec"]["ingress"]
            if {"protocol": "TCP", "port": GRPC_SERVICES[name]} in r["ports"]
        ]
        assert len(port_rules) == 1
        selectors = [peer["podSelector"]["matchLabels"] for peer in port_rules[0]["from"]]
        allowed = {
            labels.get("app.kubernetes.io/name") or f"component={labels['app.kubernetes.io/component']}"
            for labels in selectors
        }
        assert allowed == callers, name


def test_every_pod_is_covered_by_its_own_policy(objects: tuple[Manifest, ...]) -> None:
    selected = [
        p["spec"]["podSelector"].get("matchLabels", {}) for p in policies(objects) if p["spec"]["podSelector"]
    ]
    pod_labels = [w["spec"]["template"]["metadata"]["labels"] for w in workloads(objects)]
    pod_labels.append({"app.kubernetes.io/name": "tailor-trainer-worker"})  # the trainer's Jobs
    for labels in pod_labels:
        assert any(labels_match(s, labels) for s in selected), labels
    for selector in selected:
        assert any(labels_match(selector, labels) for labels in pod_labels), selector


# -- autoscaling, budgets, ingress ---------------------------------------------------------------


def test_prod_autoscales_gateway_on_cpu_and_inference_on_waiting_requests(prod: tuple[Manifest, ...]) -> None:
    gateway = named(prod, "HorizontalPodAutoscaler", "gateway")["spec"]
    assert gateway["metrics"][0]["resource"]["name"] == "cpu"
    inference = named(prod, "HorizontalPodAutoscaler", "inference")["spec"]
    assert inference["metrics"][0]["type"] == "Pods"
    assert inference["metrics"][0]["pods"]["metric"]["name"] == "vllm_num_requests_waiting"
    assert inference["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 600
    for hpa in (gateway, inference):
        target = named(prod, "Deployment", hpa["scaleTargetRef"]["name"])
        assert "replicas" not in target["spec"]  # the HPA owns it
        assert hpa["minReplicas"] >= 1 and hpa["maxReplicas"] > hpa["minReplicas"]


def test_prod_budgets_cover_the_replicated_services(prod: tuple[Manifest, ...]) -> None:
    budgets = {b["metadata"]["name"]: b["spec"] for b in of_kind(prod, "PodDisruptionBudget")}
    assert set(budgets) == {"gateway", "dataset", "inference"}
    for name, spec in budgets.items():
        assert spec["maxUnavailable"] == 1 and spec["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
        labels = named(prod, "Deployment", name)["spec"]["template"]["metadata"]["labels"]
        assert labels_match(spec["selector"]["matchLabels"], labels)


def test_prod_serves_the_gateway_over_tls(prod: tuple[Manifest, ...]) -> None:
    ingress = named(prod, "Ingress", "gateway")["spec"]
    assert ingress["tls"][0]["secretName"] and ingress["tls"][0]["hosts"] == [ingress["rules"][0]["host"]]
    backend = ingress["rules"][0]["http"]["paths"][0]["backend"]["service"]
    gateway = named(prod, "Service", "gateway")
    assert backend["name"] == "gateway" and backend["port"]["name"] in {
        p["name"] for p in gateway["spec"]["ports"]
    }
    assert len(of_kind(prod, "Ingress")) == 1


def test_the_namespace_enforces_the_restricted_pod_security_standard(objects: tuple[Manifest, ...]) -> None:
    (namespace,) = of_kind(objects, "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert all(
        o["metadata"].get("namespace") == namespace["metadata"]["name"]
        for o in objects
        if o["kind"] != "Namespace"
    )


# -- API keys and reflection -----------------------------------------------------------------------


def test_the_gateway_reads_hashed_api_keys_from_a_mounted_secret(objects: tuple[Manifest, ...]) -> None:
    # plaintext TAILOR_API_KEYS is for local runs; no workload of an overlay gets it
    assert "TAILOR_API_KEYS" not in config_data(objects)
    for workload in workloads(objects):
        for container in containers(workload):
            assert "TAILOR_API_KEYS" not in container_env(objects, container), workload["metadata"]["name"]
    gateway = named(objects, "Deployment", "gateway")
    container = pod_spec(gateway)["containers"][0]
    key_file = container_env(objects, container)["TAILOR_GATEWAY_API_KEYS_FILE"]
    directory, _, file_name = key_file.rpartition("/")
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == directory]
    (volume,) = [v for v in pod_spec(gateway)["volumes"] if v["name"] == mount["name"]]
    assert mount["readOnly"] is True
    assert volume["secret"]["secretName"].startswith("gateway-api-keys")
    assert {"key": file_name, "path": file_name} in volume["secret"]["items"]
    assert volume["secret"]["defaultMode"] & 0o077 == 0o040  # group (the pod's fsGroup) read only


def test_dev_accepts_the_api_key_its_docs_give(dev: tuple[Manifest, ...]) -> None:
    api_keys = named(dev, "Secret", "gateway-api-keys")["data"]["api-keys.sha256"]
    digests = parse_hashed_keys(base64.b64decode(api_keys).decode(), "gateway-api-keys")
    # docs/deploy.md tells dev users to use this key
    assert digests == {key_digest("sk-tailor-dev-0000000000000000"): "dev"}


def test_prod_serves_no_reflection(prod: tuple[Manifest, ...]) -> None:
    assert config_data(prod)["TAILOR_GRPC_REFLECTION"] == "false"


# -- internal auth --------------------------------------------------------------------------------

INTERNAL_AUTH_DIR = "/etc/tailor/internal-auth"
IDENTITIES = ("gateway", "dataset", "trainer", "inference")


def identity_of(workload: Manifest) -> str | None:
    """The internal-auth identity a workload's pods sign as: its service's ('inference' for every base)."""
    labels = workload["spec"]["template"]["metadata"]["labels"]
    if workload["kind"] != "Deployment":
        return None
    if labels.get("app.kubernetes.io/component") == "serving":
        return "inference"
    name = app_name(workload)
    return name if name in IDENTITIES else None


def generated_name(name: str) -> str:
    """A generated object's name without kustomize's content hash."""
    stem, _, suffix = name.rpartition("-")
    return stem if stem and len(suffix) == 10 and suffix.isalnum() else name


def mounted_volume(workload: Manifest, container: Manifest, path: str) -> tuple[Manifest, Manifest]:
    """The (volumeMount, volume) that puts something at ``path`` in ``container``."""
    (mount,) = [m for m in container.get("volumeMounts", []) if m["mountPath"] == path]
    (volume,) = [v for v in pod_spec(workload)["volumes"] if v["name"] == mount["name"]]
    return mount, volume


def test_each_service_signs_with_its_own_key_and_verifies_with_every_public_key(
    objects: tuple[Manifest, ...],
) -> None:
    seen = set()
    for workload in workloads(objects):
        identity = identity_of(workload)
        if identity is None:
            continue
        seen.add(identity)
        name = workload["metadata"]["name"]
        container = pod_spec(workload)["containers"][0]
        env = container_env(objects, container)
        assert env["TAILOR_INTERNAL_AUTH_IDENTITY"] == identity, name
        assert env["TAILOR_INTERNAL_AUTH_PRIVATE_KEY_FILE"] == f"{INTERNAL_AUTH_DIR}/private.pem", name
        assert env["TAILOR_INTERNAL_AUTH_PUBLIC_KEYS_DIR"] == f"{INTERNAL_AUTH_DIR}/public", name
        # its own private key, and only that key of its Secret
        mount, volume = mounted_volume(workload, container, f"{INTERNAL_AUTH_DIR}/private.pem")
        assert mount["readOnly"] is True and mount["subPath"] == "private.pem", name
        assert generated_name(volume["secret"]["secretName"]) == f"internal-auth-{identity}", name
        assert volume["secret"]["items"] == [{"key": "private.pem", "path": "private.pem"}], name
        assert volume["secret"]["defaultMode"] & 0o077 == 0o040, name  # group (fsGroup) read only
        # the public keys as a directory (no subPath), so that the kubelet keeps it current
        mount, volume = mounted_volume(workload, container, f"{INTERNAL_AUTH_DIR}/public")
        assert mount["readOnly"] is True and "subPath" not in mount, name
        assert generated_name(volume["configMap"]["name"]) == "internal-auth-public-keys", name
        assert "items" not in volume["configMap"], name  # every <issuer>*.pem, rotations' too
    assert seen == set(IDENTITIES)


def test_nothing_but_the_services_holds_internal_auth_keys(objects: tuple[Manifest, ...]) -> None:
    # tailor-config reaches the training Jobs (envFrom): it must not name a key or identity
    assert not [key for key in config_data(objects) if key.startswith("TAILOR_INTERNAL_AUTH_")]
    for workload in workloads(objects):
        if identity_of(workload) is not None:
            continue
        name = workload["metadata"]["name"]
        for volume in pod_spec(workload).get("volumes", []):
            assert not volume.get("secret", {}).get("secretName", "").startswith("internal-auth-"), name
        for container in containers(workload):
            assert not [v for v in container.get("env", []) if v["name"].startswith("TAILOR_INTERNAL_AUTH_")]


def test_dev_key_pairs_match(dev: tuple[Manifest, ...]) -> None:
    from cryptography.hazmat.primitives import serialization

    public_keys = named(dev, "ConfigMap", "internal-auth-public-keys")["data"]
    assert sorted(public_keys) == sorted(f"{identity}.pem" for identity in IDENTITIES)
    raw = (serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    for identity in IDENTITIES:
        secret = named(dev, "Secret", f"internal-auth-{identity}")
        private = serialization.load_pem_private_key(base64.b64decode(secret["data"]["private.pem"]), None)
        public = serialization.load_pem_public_key(public_keys[f"{identity}.pem"].encode())
        assert private.public_key().public_bytes(*raw) == public.public_bytes(*raw), identity


def test_prod_expects_the_public_keys(prod: tuple[Manifest, ...]) -> None:
    # created by the operator beforehand (docs/deploy.md), like the Secrets
    assert not [c for c in of_kind(prod, "ConfigMap") if c["metadata"]["name"].startswith("internal-auth")]
