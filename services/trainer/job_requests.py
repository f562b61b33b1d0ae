"""The checks of a CreateJobRequest that need nothing but the request: OpenAI's ranges and formats.

Each refusal is INVALID_ARGUMENT naming the field the way OpenAI does
("hyperparameters.n_epochs", "suffix", "metadata", "seed", "method.type"), so the
gateway can hand it to the SDK unchanged. The checks that need other services (the
model, the files) live in :mod:`services.trainer.jobs` and :mod:`services.trainer.file_checks`.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence

from services.common.base_models import VLLM_LORA_RANKS
from services.common.errors import InvalidArgument
from services.trainer.webhooks.targets import check_url
from tailor.trainer.v1 import job_pb2, trainer_service_pb2

MAX_SEED = 2_147_483_647
MAX_SUFFIX_LENGTH = 64
MAX_METADATA_PAIRS = 16
MAX_METADATA_KEY_LENGTH = 64
MAX_METADATA_VALUE_LENGTH = 512
MAX_N_EPOCHS = 50
MAX_BATCH_SIZE = 256
MAX_BETA = 2.0
MAX_INTEGRATIONS = 5  # OpenAI's spec: integrations has at most 5 items
# MLflow's own column sizes (experiments.name, runs.name).
MAX_EXPERIMENT_NAME_LENGTH = 256
MAX_RUN_NAME_LENGTH = 250
# The suffix becomes a segment of `ft:{base}:{org}:{suffix}:{id}`: no ':' and URL-safe.
_SUFFIX = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SUPPORTED_METHODS = {job_pb2.METHOD_TYPE_SUPERVISED, job_pb2.METHOD_TYPE_DPO}


def method_type(request: trainer_service_pb2.CreateJobRequest) -> int:
    """The requested method; an unset method (or type) means supervised, as OpenAI's default."""
    requested = request.method.type
    if requested == job_pb2.METHOD_TYPE_UNSPECIFIED:
        return job_pb2.METHOD_TYPE_SUPERVISED
    if requested not in _SUPPORTED_METHODS:
        raise InvalidArgument(
            f"method.type {requested} is not supported; use supervised or dpo.", param="method.type"
        )
    return requested


def check_request(
    request: trainer_service_pb2.CreateJobRequest,
    *,
    max_lora_rank: int,
    mlflow_allowed_targets: Sequence[str] = (),
) -> None:
    """Refuses a request whose fields are missing, malformed or out of OpenAI's ranges."""
    if not request.model:
        raise InvalidArgument(
            "Missing required parameter: 'model'.", param="model", code="missing_required_parameter"
        )
    if not request.training_file:
        raise InvalidArgument(
            "Missing required parameter: 'training_file'.",
            param="training_file",
            code="missing_required_parameter",
        )
    check_hyperparameters(request.method.hyperparameters, method_type(request), max_lora_rank=max_lora_rank)
    if request.suffix and not _SUFFIX.match(request.suffix):
        raise InvalidArgument(
            f"suffix must be 1-{MAX_SUFFIX_LENGTH} characters of letters, digits, '-' or '_'.", param="suffix"
        )
    if request.HasField("seed") and not 0 <= request.seed <= MAX_SEED:
        raise InvalidArgument(f"seed must be between 0 and {MAX_SEED}.", param="seed")
    check_metadata(dict(request.metadata))
    check_integrations(request.integrations, mlflow_allowed_targets=mlflow_allowed_targets)


def check_integrations(
    integrations: Sequence[job_pb2.Integration], *, mlflow_allowed_targets: Sequence[str] = ()
) -> None:
    """At most 5 (OpenAI's limit), each "wandb" with a project or "mlflow" with a server and an experiment.

    An MLflow tracking URI must be http(s) on an allowed host, as a webhook's URL: the worker
    sends requests there from inside the deployment, and a ``file:`` URI would write on its disk.
    """
    if len(integrations) > MAX_INTEGRATIONS:
        raise InvalidArgument(
            f"integrations may have at most {MAX_INTEGRATIONS} items.", param="integrations"
        )
    for index, integration in enumerate(integrations):
        where = f"integrations[{index}]"
        if integration.type == "wandb":
            _require(integration.wandb.project, f"{where}.wandb.project")
        elif integration.type == "mlflow":
            mlflow = integration.mlflow
            _require(mlflow.tracking_uri, f"{where}.mlflow.tracking_uri")
            _require(mlflow.experiment_name, f"{where}.mlflow.experiment_name")
            check_url(
                mlflow.tracking_uri,
                list(mlflow_allowed_targets),
                param=f"{where}.mlflow.tracking_uri",
                targets="MLflow servers",
            )
            limits = (("experiment_name", MAX_EXPERIMENT_NAME_LENGTH), ("run_name", MAX_RUN_NAME_LENGTH))
            for name, limit in limits:
                if len(getattr(mlflow, name)) > limit:
                    raise InvalidArgument(
                        f"{name} must be at most {limit} characters.", param=f"{where}.mlflow.{name}"
                    )
        else:
            raise InvalidArgument("An integration's type is 'wandb' or 'mlflow'.", param=f"{where}.type")


def _require(value: str, param: str) -> None:
    if not value:
        name = param.rsplit(".", 1)[-1]
        raise InvalidArgument(
            f"Missing required parameter: '{name}'.", param=param, code="missing_required_parameter"
        )


def check_hyperparameters(
    hyperparameters: job_pb2.Hyperparameters, method: int, *, max_lora_rank: int
) -> None:
    """Refuses values outside OpenAI's ranges (and Tailor's LoRA extensions' ranges)."""
    hp = hyperparameters
    if hp.HasField("n_epochs") and not 1 <= hp.n_epochs <= MAX_N_EPOCHS:
        _out_of_range("n_epochs", f"an integer between 1 and {MAX_N_EPOCHS}")
    if hp.HasField("batch_size") and not 1 <= hp.batch_size <= MAX_BATCH_SIZE:
        _out_of_range("batch_size", f"an integer between 1 and {MAX_BATCH_SIZE}")
    if hp.HasField("learning_rate_multiplier") and not _positive(hp.learning_rate_multiplier):
        _out_of_range("learning_rate_multiplier", "a number greater than 0")
    if hp.HasField("beta"):
        if method != job_pb2.METHOD_TYPE_DPO:
            raise InvalidArgument("beta applies only to the dpo method.", param="hyperparameters.beta")
        if not (_positive(hp.beta) and hp.beta <= MAX_BETA):
            _out_of_range("beta", f"a number greater than 0 and at most {MAX_BETA:g}")
    if hp.HasField("lora_rank"):
        allowed = sorted(rank for rank in VLLM_LORA_RANKS if rank <= max_lora_rank)
        if hp.lora_rank not in allowed:
            _out_of_range("lora_rank", f"one of {allowed}")
    if hp.lora_target_modules:
        raise InvalidArgument(
            "hyperparameters.lora_target_modules is resolved by the trainer's worker and cannot be requested.",
            param="hyperparameters.lora_target_modules",
        )
    if hp.HasField("lora_alpha") and not _positive(hp.lora_alpha):
        _out_of_range("lora_alpha", "a number greater than 0")
    if hp.HasField("lora_dropout") and not (math.isfinite(hp.lora_dropout) and 0 <= hp.lora_dropout < 1):
        _out_of_range("lora_dropout", "a number from 0 up to (not including) 1")


def check_metadata(metadata: dict[str, str]) -> None:
    if len(metadata) > MAX_METADATA_PAIRS:
        raise InvalidArgument(f"metadata may have at most {MAX_METADATA_PAIRS} pairs.", param="metadata")
    for key, value in metadata.items():
        if not key or len(key) > MAX_METADATA_KEY_LENGTH:
            raise InvalidArgument(
                f"metadata keys must be 1-{MAX_METADATA_KEY_LENGTH} characters.", param="metadata"
            )
        if len(value) > MAX_METADATA_VALUE_LENGTH:
            raise InvalidArgument(
                f"metadata values must be at most {MAX_METADATA_VALUE_LENGTH} characters (key {key!r}).",
                param="metadata",
            )


def request_fingerprint(request: trainer_service_pb2.CreateJobRequest) -> str:
    """A digest of what the request asks for, idempotency key aside: a retried POST has the same one."""
    body = trainer_service_pb2.CreateJobRequest()
    body.CopyFrom(request)
    body.ClearField("idempotency_key")
    return hashlib.sha256(body.SerializeToString(deterministic=True)).hexdigest()


def _positive(value: float) -> bool:
    return math.isfinite(value) and value > 0


def _out_of_range(name: str, expected: str) -> None:
    raise InvalidArgument(f"hyperparameters.{name} must be {expected}.", param=f"hyperparameters.{name}")
