"""OpenAI's fine-tuning shapes (docs/research/openai_api.md §1.2) and their mapping to the trainer's messages.

Requests: ``hyperparameters`` (deprecated but common) and ``method`` both map to the
contract's ``Method``; ``"auto"`` is an absent field, which the trainer resolves.
Responses: the job exactly as OpenAI sends it: ``hyperparameters`` always present
(numbers or ``"auto"``), ``method`` echoed, ``error`` null unless failed, the suffix as
``user_provided_suffix``, ``result_files`` a list, ``seed`` an int, ``integrations`` as
requested. ``usage_metrics`` is sent as null: live OpenAI responses carry the key, but
neither the SDK's ``FineTuningJob`` nor OpenAI's spec types it, so no client parses a value.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from services.gateway.errors import invalid_request
from services.gateway.fine_tuning.integrations import Integration, integration_from_proto
from services.gateway.protocol import INT32_MAX, CursorPage
from tailor.trainer.v1 import job_pb2

Auto = Literal["auto"]


def _fits_int32(value: object) -> object:
    if isinstance(value, int) and not -INT32_MAX - 1 <= value <= INT32_MAX:
        raise ValueError(f"must be 'auto' or an integer from {-INT32_MAX - 1} to {INT32_MAX}")
    return value


# "auto" or an integer the contract's int32 holds; one error naming the field either way
# (a plain union would report each branch, the first being "Input should be 'auto'").
AutoInt32 = Annotated[Auto | int, AfterValidator(_fits_int32)]

_STATUS_NAMES = {
    job_pb2.JOB_STATUS_UNSPECIFIED: "validating_files",
    job_pb2.JOB_STATUS_VALIDATING_FILES: "validating_files",
    job_pb2.JOB_STATUS_QUEUED: "queued",
    job_pb2.JOB_STATUS_RUNNING: "running",
    job_pb2.JOB_STATUS_SUCCEEDED: "succeeded",
    job_pb2.JOB_STATUS_FAILED: "failed",
    job_pb2.JOB_STATUS_CANCELLED: "cancelled",
    job_pb2.JOB_STATUS_PAUSED: "paused",
}
_LEVEL_NAMES = {
    job_pb2.EVENT_LEVEL_UNSPECIFIED: "info",
    job_pb2.EVENT_LEVEL_INFO: "info",
    job_pb2.EVENT_LEVEL_WARN: "warn",
    job_pb2.EVENT_LEVEL_ERROR: "error",
}
_METHOD_TYPES = {"supervised": job_pb2.METHOD_TYPE_SUPERVISED, "dpo": job_pb2.METHOD_TYPE_DPO}
_METHOD_NAMES = {
    job_pb2.METHOD_TYPE_UNSPECIFIED: "supervised",
    job_pb2.METHOD_TYPE_SUPERVISED: "supervised",
    job_pb2.METHOD_TYPE_DPO: "dpo",
}
# The contract's Hyperparameters fields Tailor accepts beyond OpenAI's three (and DPO's beta).
_LORA_EXTENSIONS = ("lora_rank", "lora_alpha", "lora_dropout")


# -- requests ---------------------------------------------------------------------------------


class Hyperparameters(BaseModel):
    """Each value a number or ``"auto"`` (the trainer picks); the LoRA fields are Tailor's extensions."""

    model_config = ConfigDict(extra="forbid")

    batch_size: AutoInt32 | None = Field(None, description="Examples per step, 1-256.")
    learning_rate_multiplier: Auto | float | None = Field(
        None, description="Multiplier of the base LoRA rate, > 0."
    )
    n_epochs: AutoInt32 | None = Field(None, description="Passes over the training file, 1-50.")
    lora_rank: AutoInt32 | None = Field(
        None, description="Tailor extension: LoRA rank (8, 16, 32, 64, ...)."
    )
    lora_alpha: Auto | float | None = Field(None, description="Tailor extension: LoRA alpha.")
    lora_dropout: Auto | float | None = Field(None, description="Tailor extension: LoRA dropout, 0 <= p < 1.")


class DpoHyperparameters(Hyperparameters):
    """Supervised hyperparameters plus DPO's ``beta``."""

    beta: Auto | float | None = Field(None, description="KL penalty strength, 0 < beta <= 2.")


class SupervisedMethod(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hyperparameters: Hyperparameters | None = None


class DpoMethod(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hyperparameters: DpoHyperparameters | None = None


class Method(BaseModel):
    """``{"type": "supervised"|"dpo", "supervised"|"dpo": {"hyperparameters": {...}}}``."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["supervised", "dpo", "reinforcement"]
    supervised: SupervisedMethod | None = None
    dpo: DpoMethod | None = None
    reinforcement: dict[str, Any] | None = None


class CreateFineTuningJobRequest(BaseModel):
    """The body of ``POST /v1/fine_tuning/jobs``; unknown fields are refused, as OpenAI does."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1)
    training_file: str = Field(min_length=1)
    validation_file: str | None = None
    hyperparameters: Hyperparameters | None = None
    method: Method | None = None
    suffix: str | None = Field(None, min_length=1, max_length=64)
    seed: int | None = Field(None, ge=0, le=2147483647)
    metadata: dict[str, str] | None = None
    # OpenAI's spec allows at most 5.
    integrations: list[Integration] | None = Field(None, max_length=5)

    def to_method(self) -> job_pb2.Method:
        """The contract's Method: the type, and the hyperparameters from ``method`` or the legacy field."""
        method_type = self.method.type if self.method is not None else "supervised"
        if method_type == "reinforcement":
            raise invalid_request(
                "Tailor fine-tunes with the 'supervised' and 'dpo' methods; 'reinforcement' is not supported.",
                param="method.type",
                code="invalid_value",
            )
        inner = getattr(self.method, method_type, None) if self.method is not None else None
        method_hyperparameters = inner.hyperparameters if inner is not None else None
        if method_hyperparameters is not None and self.hyperparameters is not None:
            raise invalid_request(
                "Give hyperparameters either in 'method' or in the deprecated 'hyperparameters', not both.",
                param="hyperparameters",
            )
        chosen = method_hyperparameters or self.hyperparameters
        method = job_pb2.Method(type=_METHOD_TYPES[method_type])
        if chosen is not None:
            for name, value in chosen.model_dump(exclude_none=True).items():
                if value != "auto":
                    setattr(method.hyperparameters, name, value)
        return method


# -- responses --------------------------------------------------------------------------------


class JobError(BaseModel):
    code: str
    message: str
    param: str | None


class JobHyperparameters(BaseModel):
    """The three OpenAI hyperparameters, ``"auto"`` until the trainer resolves them."""

    batch_size: Auto | int
    learning_rate_multiplier: Auto | float
    n_epochs: Auto | int


class FineTuningJob(BaseModel):
    """A fine-tuning job (``client.fine_tuning.jobs.retrieve``)."""

    id: str
    object: Literal["fine_tuning.job"] = "fine_tuning.job"
    created_at: int
    error: JobError | None
    fine_tuned_model: str | None
    finished_at: int | None
    hyperparameters: JobHyperparameters
    model: str
    organization_id: str
    result_files: list[str]
    seed: int
    status: Literal["validating_files", "queued", "running", "succeeded", "failed", "cancelled", "paused"]
    trained_tokens: int | None
    training_file: str
    validation_file: str | None
    estimated_finish: int | None
    integrations: list[dict[str, Any]] | None
    metadata: dict[str, str] | None
    method: dict[str, Any]
    user_provided_suffix: str | None
    usage_metrics: dict[str, Any] | None = None

    @classmethod
    def from_proto(cls, job: job_pb2.Job) -> FineTuningJob:
        hp = job.method.hyperparameters
        method_name = _METHOD_NAMES[job.method.type]
        method_hyperparameters: dict[str, Any] = {
            "batch_size": hp.batch_size if hp.HasField("batch_size") else "auto",
            "learning_rate_multiplier": hp.learning_rate_multiplier
            if hp.HasField("learning_rate_multiplier")
            else "auto",
            "n_epochs": hp.n_epochs if hp.HasField("n_epochs") else "auto",
        }
        top_level = dict(method_hyperparameters)
        if method_name == "dpo":
            method_hyperparameters["beta"] = hp.beta if hp.HasField("beta") else "auto"
        for name in _LORA_EXTENSIONS:
            if hp.HasField(name):
                method_hyperparameters[name] = getattr(hp, name)
        failed = job.status == job_pb2.JOB_STATUS_FAILED
        return cls(
            id=job.id,
            created_at=job.created_at,
            error=(
                JobError(
                    code=job.error.code or "server_error",
                    message=job.error.message,
                    param=job.error.param or None,
                )
                if failed and job.HasField("error")
                else None
            ),
            fine_tuned_model=job.fine_tuned_model or None,
            finished_at=job.finished_at if job.HasField("finished_at") else None,
            hyperparameters=JobHyperparameters(**top_level),
            model=job.model,
            organization_id=job.organization_id,
            result_files=list(job.result_files),
            seed=job.seed,
            status=_STATUS_NAMES[job.status],
            trained_tokens=job.trained_tokens if job.HasField("trained_tokens") else None,
            training_file=job.training_file,
            validation_file=job.validation_file or None,
            estimated_finish=job.estimated_finish if job.HasField("estimated_finish") else None,
            integrations=[integration_from_proto(item) for item in job.integrations],
            metadata=dict(job.metadata) or None,
            method={"type": method_name, method_name: {"hyperparameters": method_hyperparameters}},
            user_provided_suffix=job.suffix or None,
        )


class FineTuningJobList(CursorPage[FineTuningJob]):
    """A page of jobs, newest first."""


_METRIC_FIELDS = (
    "step",
    "total_steps",
    "train_loss",
    "train_mean_token_accuracy",
    "valid_loss",
    "valid_mean_token_accuracy",
    "full_valid_loss",
    "full_valid_mean_token_accuracy",
    "epoch",
)


def metrics_dict(metrics: job_pb2.Metrics) -> dict[str, float | int]:
    """The metrics that are set, under OpenAI's names."""
    return {name: getattr(metrics, name) for name in _METRIC_FIELDS if metrics.HasField(name)}


class FineTuningJobEvent(BaseModel):
    """One line of a job's log; ``data`` holds the metrics of a ``metrics`` event, ``{}`` for others."""

    id: str
    object: Literal["fine_tuning.job.event"] = "fine_tuning.job.event"
    created_at: int
    level: Literal["info", "warn", "error"]
    message: str
    data: dict[str, Any]
    type: Literal["message", "metrics"]

    @classmethod
    def from_proto(cls, event: job_pb2.JobEvent) -> FineTuningJobEvent:
        is_metrics = event.type == job_pb2.EVENT_TYPE_METRICS
        return cls(
            id=event.id,
            created_at=event.created_at,
            level=_LEVEL_NAMES[event.level],
            message=event.message,
            data=metrics_dict(event.metrics) if is_metrics else {},
            type="metrics" if is_metrics else "message",
        )


class FineTuningJobEventList(CursorPage[FineTuningJobEvent]):
    """A page of events, newest first."""


class FineTuningJobCheckpoint(BaseModel):
    """A checkpoint; ``fine_tuned_model_checkpoint`` is a model name usable for chat."""

    id: str
    object: Literal["fine_tuning.job.checkpoint"] = "fine_tuning.job.checkpoint"
    created_at: int
    fine_tuned_model_checkpoint: str
    fine_tuning_job_id: str
    step_number: int
    metrics: dict[str, Any]

    @classmethod
    def from_proto(cls, checkpoint: job_pb2.Checkpoint) -> FineTuningJobCheckpoint:
        return cls(
            id=checkpoint.id,
            created_at=checkpoint.created_at,
            fine_tuned_model_checkpoint=checkpoint.fine_tuned_model_checkpoint,
            fine_tuning_job_id=checkpoint.job_id,
            step_number=checkpoint.step_number,
            metrics=metrics_dict(checkpoint.metrics),
        )


class FineTuningJobCheckpointList(CursorPage[FineTuningJobCheckpoint]):
    """A page of checkpoints, newest first."""
