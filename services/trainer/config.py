"""Settings of the trainer service (environment prefix ``TAILOR_``).

Three groups: where the records live, how jobs are scheduled and how workers are
watched, and (for ``trainer_executor=kubernetes``) what the batch/v1 Job of each
fine-tune looks like. Defaults run on a laptop: SQLite in the data directory, one
job at a time, one local subprocess per job.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from services.common.settings import CommonSettings


class TrainerSettings(CommonSettings):
    """The common settings plus the trainer service's own."""

    service_identity: ClassVar[str | None] = "trainer"

    trainer_listen: str = Field("127.0.0.1:50052", description="Address the trainer gRPC server binds.")
    trainer_metrics_port: int = Field(
        0, ge=0, le=65535, description="Port of the trainer service's Prometheus /metrics; 0 disables it."
    )
    trainer_database_url: str = Field(
        "",
        description=(
            "SQLAlchemy async URL of the trainer's records (jobs, events, checkpoints, models); "
            "empty uses SQLite at data_dir/records/trainer.db. Example: postgresql+asyncpg://u:p@db/tailor."
        ),
    )

    # Scheduling.
    trainer_max_concurrent_jobs: int = Field(
        1,
        ge=1,
        description="Jobs trained at the same time; the others wait, highest priority first, FIFO within one.",
    )
    trainer_scheduler_interval_s: float = Field(
        1.0, gt=0, description="How often the scheduler looks at queued jobs, waiting files and workers."
    )
    trainer_file_wait_timeout_s: float = Field(
        600.0,
        gt=0,
        description="How long a job may wait in validating_files for its files to finish processing.",
    )

    # Workers.
    trainer_executor: Literal["local", "kubernetes"] = Field(
        "local",
        description="Where workers run: `local` (one subprocess per job) or `kubernetes` (one batch/v1 Job).",
    )
    trainer_worker_command: str = Field(
        "python -m services.trainer.worker",
        description="The worker's command line; a leading `python` means the trainer's own interpreter (local executor).",
    )
    trainer_heartbeat_interval_s: int = Field(
        10, ge=1, description="Seconds between the heartbeats a worker is asked to send."
    )
    trainer_heartbeat_timeout_s: float = Field(
        60.0, gt=0, description="A claimed worker silent for this long is presumed lost and stopped."
    )
    trainer_worker_start_timeout_s: float = Field(
        600.0,
        gt=0,
        description="A launched worker that has not claimed its job within this long is presumed lost.",
    )
    trainer_worker_stop_grace_s: float = Field(
        5.0,
        ge=0,
        description="After SIGTERM (or a Kubernetes delete), how long a worker may take before it is killed.",
    )
    trainer_pause_timeout_s: float = Field(
        300.0,
        gt=0,
        description="How long a paused worker may take to save its checkpoint and exit before it is stopped.",
    )
    trainer_worker_token_ttl_s: int = Field(
        86400,
        ge=60,
        description=(
            "Lifetime of the job-scoped token a worker is launched with (its attempt's deadline); "
            "keep it above the longest training run (Kubernetes: at least trainer_k8s_active_deadline_s)."
        ),
    )
    # Experiment trackers (OpenAI's `integrations`; docs/integrations.md).
    trainer_wandb_keys_dir: Path | None = Field(
        None,
        description=(
            "Directory of W&B API keys, one file per organization named by its id (a mounted Secret works). "
            "A worker of a job with a `wandb` integration gets its organization's key as WANDB_API_KEY "
            "(local executor only); without one, the run is written offline."
        ),
    )
    trainer_wandb_base_url: str = Field(
        "",
        description="A self-hosted W&B server's URL, given to workers as WANDB_BASE_URL; empty for W&B's cloud.",
    )
    trainer_mlflow_allowed_targets: list[str] = Field(
        default_factory=list,
        description=(
            "JSON list of the hosts and CIDRs an `mlflow` integration's tracking_uri may point at "
            '(e.g. ["mlflow.internal"]); empty allows any http(s) server, loopback and private networks '
            "included. Checked when the job is created, as webhook URLs are."
        ),
    )
    trainer_mlflow_credentials_dir: Path | None = Field(
        None,
        description=(
            "Directory of MLflow credentials, one file per organization named by its id, of `token=...` or "
            "`username=...` and `password=...` lines. A worker of the organization's tracked job gets them as "
            "MLFLOW_TRACKING_TOKEN or MLFLOW_TRACKING_USERNAME/PASSWORD (local executor only), and only when "
            "trainer_mlflow_allowed_targets is set: users choose the tracking server."
        ),
    )
    trainer_worker_retries: int = Field(
        1,
        ge=0,
        description="How often a job whose worker crashed or vanished is retried from its last checkpoint.",
    )
    trainer_checkpoints_kept: int = Field(
        3,
        ge=1,
        description="Checkpoints kept per job (the newest); older ones are deleted with their objects.",
    )

    # Evals (services/trainer/evals).
    trainer_eval_max_items: int = Field(
        10000, ge=1, description="The most items one eval run may have (its file's lines or inline rows)."
    )
    trainer_eval_max_file_bytes: int = Field(
        64 * 1024 * 1024, ge=1, description="The largest items file an eval run may read, in bytes."
    )

    # Webhooks (services/trainer/webhooks, docs/webhooks.md).
    trainer_webhook_interval_s: float = Field(
        1.0, gt=0, description="How often the webhook delivery loop looks for events to send."
    )
    trainer_webhook_timeout_s: float = Field(
        10.0, gt=0, le=60, description="How long one webhook request may take before it counts as failed."
    )
    trainer_webhook_first_retry_s: float = Field(
        5.0, gt=0, description="Delay before the first retry of a failed webhook delivery; doubled at each retry."
    )
    trainer_webhook_max_retry_s: float = Field(
        600.0, gt=0, description="The longest delay between two attempts of one webhook delivery."
    )
    trainer_webhook_give_up_s: float = Field(
        86400.0,
        gt=0,
        description="A webhook delivery not accepted (2xx) this long after its event is marked failed.",
    )
    trainer_webhook_allowed_targets: list[str] = Field(
        default_factory=list,
        description=(
            "JSON list of the hosts and CIDRs webhook URLs may point at (e.g. "
            '["hooks.example.com", "203.0.113.0/24"]); empty allows any, loopback and private '
            "networks included. A host name is checked as written; CIDRs also against the addresses it resolves to."
        ),
    )
    trainer_webhook_retention_s: float = Field(
        30 * 86400.0,
        gt=0,
        description=(
            "How long delivered and failed webhook deliveries, their attempts and their sent events are "
            "kept (an endpoint's delivery log and counts cover this window); pending ones are never removed."
        ),
    )
    trainer_webhook_delivery_paused: bool = Field(
        False,
        description="Keep webhook events in the outbox without sending them (maintenance; tests of restarts).",
    )

    # The Kubernetes executor: one batch/v1 Job per attempt.
    trainer_k8s_namespace: str = Field("tailor", description="Namespace the training Jobs are created in.")
    trainer_k8s_image: str = Field(
        "ghcr.io/tailor/trainer-worker:latest", description="Container image of the training worker."
    )
    trainer_k8s_image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        "IfNotPresent", description="imagePullPolicy of the worker container."
    )
    trainer_k8s_service_account: str = Field(
        "tailor-trainer-worker",
        description="ServiceAccount of worker pods (they need no Kubernetes API access).",
    )
    trainer_k8s_env_from_secrets: list[str] = Field(
        default_factory=list,
        description=(
            "JSON list of Secret names mounted with envFrom (e.g. a model hub token). Never the object "
            "store's: workers move checkpoints through the trainer and get no object store access."
        ),
    )
    trainer_k8s_gpus: int = Field(1, ge=0, description="GPUs per worker pod (request == limit); 0 for CPU.")
    trainer_k8s_gpu_resource: str = Field("nvidia.com/gpu", description="Extended resource name of a GPU.")
    trainer_k8s_cpu_request: str = Field("2", description="CPU request of a worker pod.")
    trainer_k8s_memory: str = Field("16Gi", description="Memory request and limit of a worker pod.")
    trainer_k8s_shm_size: str = Field("2Gi", description="Size of the in-memory /dev/shm of a worker pod.")
    trainer_k8s_data_dir: str = Field(
        "/data", description="TAILOR_DATA_DIR inside a worker pod (an emptyDir: built models, caches)."
    )
    trainer_k8s_active_deadline_s: int = Field(
        86400, ge=1, description="activeDeadlineSeconds: the longest a training Job may run."
    )
    trainer_k8s_ttl_after_finished_s: int = Field(
        3600,
        ge=0,
        description="ttlSecondsAfterFinished: how long a finished Job and its pod stay for inspection.",
    )
    trainer_k8s_node_selector: dict[str, str] = Field(
        default_factory=dict,
        description='JSON object: nodeSelector of worker pods, e.g. {"nvidia.com/gpu.present": "true"}.',
    )
    trainer_k8s_tolerations: list[dict[str, Any]] = Field(
        default_factory=list,
        description='JSON list: tolerations of worker pods, e.g. [{"key": "nvidia.com/gpu", "operator": "Exists"}].',
    )
    trainer_k8s_in_cluster: bool = Field(
        True, description="Use the pod's ServiceAccount to reach the API server; false reads ~/.kube/config."
    )
