"""The Kubernetes executor: one batch/v1 Job per job attempt, through the official client.

:func:`build_job_manifest` is a pure function from settings and an attempt to a
``V1Job`` (unit-tested without a cluster). The Job never retries by itself
(``backoffLimit: 0``): retrying from the last checkpoint is the trainer's decision,
made once per failure. ``activeDeadlineSeconds`` bounds a run that hangs without the
trainer noticing; ``ttlSecondsAfterFinished`` lets finished Jobs and their logs stay
a while, then go.

The pod runs non-root on a read-only root filesystem; what it writes goes to
emptyDirs (``/tmp``, the data directory, an in-memory ``/dev/shm`` for PyTorch).
Object store credentials come from Secrets (``envFrom``), never from the manifest.
Workers that outlive a trainer restart keep running: the restarted trainer finds
them by name and keeps watching them.
"""

from __future__ import annotations

import asyncio
import shlex

import structlog
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from services.trainer.config import TrainerSettings
from services.trainer.executors.base import ATTEMPT_PREFIX, RUNNING, Executor, WorkerLaunch, WorkerStatus

log = structlog.get_logger("tailor.trainer.kubernetes")

WORKER_CONTAINER = "worker"
LABEL_JOB_ID = "tailor.dev/fine-tuning-job"
LABEL_ATTEMPT_ID = "tailor.dev/attempt"
LABEL_ORGANIZATION = "tailor.dev/organization"
# Non-root user of the worker image (deploy/docker builds it with this uid).
WORKER_UID = 10001
_HTTP_NOT_FOUND = 404


def job_name(launch: WorkerLaunch) -> str:
    """The Job's name: unique per attempt, lowercase (DNS-1123), short enough for its pods' names."""
    return "tailor-train-" + launch.attempt_id.removeprefix(ATTEMPT_PREFIX)


def labels(launch: WorkerLaunch) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "tailor-trainer-worker",
        "app.kubernetes.io/part-of": "tailor",
        "app.kubernetes.io/component": "training-worker",
        "app.kubernetes.io/managed-by": "tailor-trainer",
        LABEL_JOB_ID: launch.job_id,
        LABEL_ATTEMPT_ID: launch.attempt_id,
        LABEL_ORGANIZATION: launch.organization_id,
    }


def build_job_manifest(
    settings: TrainerSettings, launch: WorkerLaunch, environment: dict[str, str]
) -> client.V1Job:
    """The batch/v1 Job that trains one attempt of a job."""
    gpus = settings.trainer_k8s_gpus
    requests = {"cpu": settings.trainer_k8s_cpu_request, "memory": settings.trainer_k8s_memory}
    limits = {"memory": settings.trainer_k8s_memory}
    if gpus > 0:
        # Extended resources cannot be overcommitted: request and limit must be equal.
        requests[settings.trainer_k8s_gpu_resource] = str(gpus)
        limits[settings.trainer_k8s_gpu_resource] = str(gpus)
    env = {**environment, "TAILOR_DATA_DIR": settings.trainer_k8s_data_dir, "HOME": "/tmp"}
    container = client.V1Container(
        name=WORKER_CONTAINER,
        image=settings.trainer_k8s_image,
        image_pull_policy=settings.trainer_k8s_image_pull_policy,
        command=shlex.split(settings.trainer_worker_command),
        env=[client.V1EnvVar(name=name, value=value) for name, value in sorted(env.items())],
        env_from=[
            client.V1EnvFromSource(secret_ref=client.V1SecretEnvSource(name=secret))
            for secret in settings.trainer_k8s_env_from_secrets
        ],
        resources=client.V1ResourceRequirements(requests=requests, limits=limits),
        security_context=client.V1SecurityContext(
            allow_privilege_escalation=False,
            read_only_root_filesystem=True,
            privileged=False,
            capabilities=client.V1Capabilities(drop=["ALL"]),
        ),
        volume_mounts=[
            client.V1VolumeMount(name="tmp", mount_path="/tmp"),
            client.V1VolumeMount(name="data", mount_path=settings.trainer_k8s_data_dir),
            client.V1VolumeMount(name="dshm", mount_path="/dev/shm"),
        ],
    )
    pod = client.V1PodSpec(
        restart_policy="Never",
        service_account_name=settings.trainer_k8s_service_account,
        # The worker talks to the trainer over gRPC, never to the Kubernetes API.
        automount_service_account_token=False,
        enable_service_links=False,
        termination_grace_period_seconds=max(1, int(settings.trainer_worker_stop_grace_s)),
        security_context=client.V1PodSecurityContext(
            run_as_non_root=True,
            run_as_user=WORKER_UID,
            run_as_group=WORKER_UID,
            fs_group=WORKER_UID,
            seccomp_profile=client.V1SeccompProfile(type="RuntimeDefault"),
        ),
        containers=[container],
        volumes=[
            client.V1Volume(name="tmp", empty_dir=client.V1EmptyDirVolumeSource()),
            client.V1Volume(name="data", empty_dir=client.V1EmptyDirVolumeSource()),
            client.V1Volume(
                name="dshm",
                empty_dir=client.V1EmptyDirVolumeSource(
                    medium="Memory", size_limit=settings.trainer_k8s_shm_size
                ),
            ),
        ],
        node_selector=dict(settings.trainer_k8s_node_selector) or None,
        tolerations=[client.V1Toleration.from_dict(t) for t in settings.trainer_k8s_tolerations] or None,
    )
    return client.V1Job(
        api_version="batch/v1",
        kind="Job",
        metadata=client.V1ObjectMeta(
            name=job_name(launch), namespace=settings.trainer_k8s_namespace, labels=labels(launch)
        ),
        spec=client.V1JobSpec(
            # Retries are the trainer's: it resumes from the last checkpoint, with a fresh attempt id.
            backoff_limit=0,
            active_deadline_seconds=settings.trainer_k8s_active_deadline_s,
            ttl_seconds_after_finished=settings.trainer_k8s_ttl_after_finished_s,
            template=client.V1PodTemplateSpec(metadata=client.V1ObjectMeta(labels=labels(launch)), spec=pod),
        ),
    )


def job_status(job: client.V1Job) -> WorkerStatus:
    """Whether a Job's worker still runs, from its status."""
    status = job.status
    if status is None:
        return RUNNING
    if status.succeeded:
        return WorkerStatus(running=False, exit_code=0, detail="the worker's Kubernetes Job completed")
    if status.failed:
        reasons = [c.reason or c.type for c in status.conditions or () if c.type == "Failed"]
        reason = f" ({', '.join(reasons)})" if reasons else ""
        return WorkerStatus(running=False, detail=f"the worker's Kubernetes Job failed{reason}")
    return RUNNING


def open_batch_api(settings: TrainerSettings) -> client.BatchV1Api:
    """A BatchV1Api authenticated as the trainer's ServiceAccount, or from ~/.kube/config."""
    if settings.trainer_k8s_in_cluster:
        config.load_incluster_config()
    else:
        config.load_kube_config()
    return client.BatchV1Api()


class KubernetesExecutor(Executor):
    """Workers as batch/v1 Jobs. The client is blocking, so every call runs in a thread."""

    def __init__(self, settings: TrainerSettings, api: client.BatchV1Api | None = None) -> None:
        self._settings = settings
        self._namespace = settings.trainer_k8s_namespace
        self._api = api if api is not None else open_batch_api(settings)

    async def launch(self, launch: WorkerLaunch, environment: dict[str, str]) -> None:
        manifest = build_job_manifest(self._settings, launch, environment)
        await asyncio.to_thread(self._api.create_namespaced_job, self._namespace, manifest)
        log.info(
            "worker Job created", job_id=launch.job_id, attempt_id=launch.attempt_id, name=job_name(launch)
        )

    async def status(self, launch: WorkerLaunch) -> WorkerStatus:
        try:
            job = await asyncio.to_thread(
                self._api.read_namespaced_job_status, job_name(launch), self._namespace
            )
        except ApiException as error:
            if error.status == _HTTP_NOT_FOUND:
                return WorkerStatus(running=False, detail="the worker's Kubernetes Job no longer exists")
            raise
        return job_status(job)

    async def stop(self, launch: WorkerLaunch) -> None:
        try:
            await asyncio.to_thread(
                self._api.delete_namespaced_job,
                job_name(launch),
                self._namespace,
                grace_period_seconds=max(0, int(self._settings.trainer_worker_stop_grace_s)),
                # Foreground: the Job stays visible until its pod is gone, so the trainer
                # starts no next attempt while this one still holds the GPU.
                propagation_policy="Foreground",
            )
        except ApiException as error:
            if error.status != _HTTP_NOT_FOUND:
                raise

    async def release(self, launch: WorkerLaunch) -> None:
        """Nothing to forget: a finished Job is removed by Kubernetes after ttlSecondsAfterFinished."""

    async def close(self) -> None:
        """Leaves the Jobs running: a restarted trainer finds them by name and watches them again."""
