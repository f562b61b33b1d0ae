"""A job's hyperparameters with every ``"auto"`` resolved, the way OpenAI resolves them.

OpenAI does not publish its current rules; these are the public ones (docs/research/training.md §1):

- ``n_epochs``: the cookbook estimator (``Chat_finetuning_data_prep.ipynb``): 3 epochs, but at
  least 100 and at most 25,000 example-passes, within 1-25 epochs;
- ``batch_size``: about 0.2% of the training examples, between 1 and 256 (legacy fine-tunes docs);
- ``learning_rate_multiplier``: 1.0, applied to the base model's LoRA learning rate;
- ``beta`` (DPO): 0.1, the value of OpenAI's DPO guide and TRL's default.

The LoRA shape (a Tailor extension) defaults to the base model's configured rank, alpha = 2 x rank
and no dropout. Requested values are kept as they are, after a range check.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from services.common.base_models import VLLM_LORA_RANKS
from services.trainer.worker.failures import INVALID_HYPERPARAMETERS, JobFailure
from tailor.trainer.v1 import job_pb2

TARGET_EPOCHS = 3
MIN_TARGET_EXAMPLES = 100
MAX_TARGET_EXAMPLES = 25_000
MIN_DEFAULT_EPOCHS = 1
MAX_DEFAULT_EPOCHS = 25
BATCH_SIZE_SHARE = 0.002
MAX_BATCH_SIZE = 256
DEFAULT_BETA = 0.1


@dataclass(frozen=True)
class Hyperparameters:
    """Everything that shapes a run, with nothing left on auto."""

    dpo: bool
    n_epochs: int
    batch_size: int
    learning_rate_multiplier: float
    learning_rate: float
    lora_rank: int
    lora_alpha: float
    lora_dropout: float
    beta: float | None

    def to_method(self, target_modules: list[str] | None = None) -> job_pb2.Method:
        """The resolved method, as reported to the trainer (``ReportStarted.resolved_method``).

        ``target_modules``: the modules the attached adapter adapts, which travel with the
        model's registry entry to serving.
        """
        hyperparameters = job_pb2.Hyperparameters(
            n_epochs=self.n_epochs,
            batch_size=self.batch_size,
            learning_rate_multiplier=self.learning_rate_multiplier,
            lora_rank=self.lora_rank,
            lora_alpha=self.lora_alpha,
            lora_dropout=self.lora_dropout,
            lora_target_modules=target_modules or [],
        )
        if self.beta is not None:
            hyperparameters.beta = self.beta
        method_type = job_pb2.METHOD_TYPE_DPO if self.dpo else job_pb2.METHOD_TYPE_SUPERVISED
        return job_pb2.Method(type=method_type, hyperparameters=hyperparameters)


def auto_n_epochs(n_examples: int) -> int:
    """OpenAI's cookbook rule: about 3 epochs, within 100-25,000 example-passes."""
    if n_examples * TARGET_EPOCHS < MIN_TARGET_EXAMPLES:
        return min(MAX_DEFAULT_EPOCHS, MIN_TARGET_EXAMPLES // n_examples)
    if n_examples * TARGET_EPOCHS > MAX_TARGET_EXAMPLES:
        return max(MIN_DEFAULT_EPOCHS, MAX_TARGET_EXAMPLES // n_examples)
    return TARGET_EPOCHS


def auto_batch_size(n_examples: int) -> int:
    """About 0.2% of the examples, at least 1 and at most 256."""
    return max(1, min(MAX_BATCH_SIZE, round(n_examples * BATCH_SIZE_SHARE)))


def steps_per_epoch(n_examples: int, batch_size: int) -> int:
    """Optimizer steps in one pass; the last batch of an epoch may be smaller."""
    return math.ceil(n_examples / batch_size)


def resolve_hyperparameters(
    method: job_pb2.Method,
    *,
    n_examples: int,
    base_learning_rate: float,
    default_lora_rank: int,
    max_lora_rank: int,
) -> Hyperparameters:
    """Resolve a job's requested method (absent fields are auto) for ``n_examples`` training examples."""
    requested = method.hyperparameters
    dpo = method.type == job_pb2.METHOD_TYPE_DPO

    def given(name: str) -> bool:
        return requested.HasField(name)

    n_epochs = requested.n_epochs if given("n_epochs") else auto_n_epochs(n_examples)
    batch_size = requested.batch_size if given("batch_size") else auto_batch_size(n_examples)
    multiplier = requested.learning_rate_multiplier if given("learning_rate_multiplier") else 1.0
    lora_rank = requested.lora_rank if given("lora_rank") else default_lora_rank
    lora_alpha = requested.lora_alpha if given("lora_alpha") else 2.0 * lora_rank
    lora_dropout = requested.lora_dropout if given("lora_dropout") else 0.0
    beta = (requested.beta if given("beta") else DEFAULT_BETA) if dpo else None

    _require(1 <= n_epochs <= 50, "n_epochs", "must be between 1 and 50")
    _require(1 <= batch_size <= MAX_BATCH_SIZE, "batch_size", f"must be between 1 and {MAX_BATCH_SIZE}")
    _require(multiplier > 0, "learning_rate_multiplier", "must be greater than 0")
    allowed_ranks = sorted(rank for rank in VLLM_LORA_RANKS if 8 <= rank <= max_lora_rank)
    _require(lora_rank in allowed_ranks, "lora_rank", f"must be one of {allowed_ranks}")
    _require(lora_alpha > 0, "lora_alpha", "must be greater than 0")
    _require(0 <= lora_dropout < 1, "lora_dropout", "must be at least 0 and less than 1")
    if beta is not None:
        _require(0 < beta <= 2, "beta", "must be greater than 0 and at most 2")

    return Hyperparameters(
        dpo=dpo,
        n_epochs=n_epochs,
        batch_size=batch_size,
        learning_rate_multiplier=multiplier,
        learning_rate=base_learning_rate * multiplier,
        lora_rank=lora_rank,
        lora_alpha=lora_alpha,
        lora_dropout=lora_dropout,
        beta=beta,
    )


def _require(condition: bool, name: str, rule: str) -> None:
    if not condition:
        raise JobFailure(
            INVALID_HYPERPARAMETERS, f"Hyperparameter `{name}` {rule}.", param=f"hyperparameters.{name}"
        )
