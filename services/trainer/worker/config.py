"""Settings of the training worker (environment prefix ``TAILOR_``).

The trainer's executor starts one worker per job attempt and sets the three identity
variables (``TAILOR_WORKER_JOB_ID``, ``TAILOR_WORKER_ATTEMPT_ID``,
``TAILOR_WORKER_ORGANIZATION``) and the attempt's credential (``TAILOR_WORKER_TOKEN``, a
token the trainer signed for this job and attempt only); service addresses, base models and
the like are inherited from the trainer's own environment, object store settings never (a
worker moves checkpoints through the trainer's ``WorkerService``). The ``worker_*``
knobs below tune how training runs on the machine at hand; none changes what a job means.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr

from services.common.settings import CommonSettings


class WorkerSettings(CommonSettings):
    """The common settings plus the worker's identity and its training knobs."""

    worker_job_id: str = Field("", description="The job this worker trains (set by the trainer's executor).")
    worker_attempt_id: str = Field(
        "", description="This launch's attempt id, named in every report (set by the trainer's executor)."
    )
    worker_organization: str = Field(
        "", description="The job's organization, sent with every call (set by the trainer's executor)."
    )
    worker_token: SecretStr = Field(
        SecretStr(""),
        description=(
            "The attempt's credential, signed by the trainer: this job's calls and files only, until the "
            "attempt's deadline (set by the trainer's executor)."
        ),
    )

    worker_device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Where to train: `auto` picks CUDA when a GPU is visible, else the CPU."
    )
    worker_dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto",
        description="Base model weights' dtype: `auto` is bfloat16 on a GPU that supports it, else float32.",
    )
    worker_packing: bool = Field(
        True,
        description=(
            "Pack a step's examples into rows of the max sequence length (attention stays within each "
            "example) instead of padding each example to the longest; same loss, fewer wasted tokens."
        ),
    )
    worker_gradient_checkpointing: bool | Literal["auto"] = Field(
        "auto",
        description=(
            "Recompute activations in the backward pass: less memory, about 20-30% slower. `auto` chooses "
            "from the model's size and the GPU's memory (services/trainer/worker/memory.py): off on the CPU "
            "under 1B parameters."
        ),
    )
    worker_micro_batch_tokens: int = Field(
        0,
        ge=0,
        description=(
            "Most tokens (padding included) in one forward pass; a step's batch is split into micro-batches "
            "of this size and their gradients accumulated. 0 chooses from the model's size and the GPU's "
            "memory (16384 on the CPU under 1B parameters). Lower it when training runs out of memory."
        ),
    )
    worker_metrics_interval_steps: int = Field(
        5,
        ge=1,
        description="Steps between metrics events (and sampled validation batches); epoch ends always report.",
    )
    worker_max_seq_length: int = Field(
        0,
        ge=0,
        description="Truncate examples to this many tokens instead of the base model's max sequence length; 0 keeps it.",
    )
    worker_warmup_ratio: float = Field(
        0.05,
        ge=0,
        lt=1,
        description="Share of the steps over which the learning rate warms up before it decays.",
    )
    worker_attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] = Field(
        "sdpa", description="Attention kernel passed to from_pretrained."
    )
    worker_torch_threads: int = Field(
        0, ge=0, description="CPU threads torch may use; 0 leaves torch's default."
    )
    worker_stop_grace_s: float = Field(
        3.0,
        gt=0,
        description="After SIGTERM, how long the worker may take to stop before it exits regardless.",
    )
    worker_wandb_dir: Path | None = Field(
        None,
        description=(
            "Where the runs of jobs with a `wandb` integration are written, under "
            "`{organization}/{job id}/`; offline runs (no W&B key) stay there for `wandb sync`. Empty uses `{data_dir}/wandb`."
        ),
    )
    worker_wandb_init_timeout_s: float = Field(
        30.0,
        gt=0,
        description=(
            "How long a W&B run may take to start online before the worker writes it offline instead "
            "(wandb's own default is 90 s); training waits for it once per attempt."
        ),
    )
    worker_mlflow_request_timeout_s: int = Field(
        10,
        ge=1,
        description=(
            "How long one request to an `mlflow` integration's tracking server may take (mlflow's own "
            "default is 120 s); training waits for each, once per step."
        ),
    )
    worker_mlflow_request_retries: int = Field(
        2,
        ge=0,
        le=10,
        description=(
            "How often a failed request to an MLflow tracking server is retried before the tracker is "
            "dropped with a warn event (mlflow's own default, 7, retries for minutes)."
        ),
    )
    worker_scratch_dir: Path | None = Field(
        None, description="Where downloaded files and checkpoints are staged; empty uses the system temp dir."
    )

