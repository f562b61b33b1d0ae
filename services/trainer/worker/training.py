"""The training loop: AdamW with warm-up and decay, gradient clipping, metrics and evaluation.

:class:`TrainingLoop` trains a PEFT model on a list of examples and yields a
:class:`StepReport` after every optimizer step. The caller (the worker's orchestration, or the
benchmark) decides what to do between steps: report metrics, save a checkpoint, stop. The loop
itself knows nothing of gRPC or object stores.

What it promises:

- a step takes ``batch_size`` examples (the last one of an epoch may take fewer), in an order
  drawn per epoch from the seed; its loss is normalised over the whole step, so splitting it
  into micro-batches or packing them does not change the gradient (:mod:`.packing`);
- on the CPU, the same seed, examples, model and configuration give the same losses, and
  :meth:`TrainingLoop.state_dict` / :meth:`TrainingLoop.load_state_dict` capture everything
  needed to continue a run exactly where it stopped (adapter, optimizer, schedule, RNG, step);
- metrics follow OpenAI's: ``train_loss`` and ``train_mean_token_accuracy`` on the step's
  batch, ``valid_*`` on a sampled validation batch every ``metrics_interval`` steps and
  ``full_valid_*`` on the whole validation set at each epoch end.

The objective (what the loss is) is pluggable: :class:`SupervisedObjective` here, and
:class:`services.trainer.worker.dpo.PreferenceObjective`.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from peft import PeftModel

from services.trainer.worker.data import Example
from services.trainer.worker.lora import load_trainable_state, trainable_state
from services.trainer.worker.packing import MicroBatch, build_micro_batches
from services.trainer.worker.scoring import score_tokens

ADAM_BETAS = (0.9, 0.999)
ADAM_EPSILON = 1e-8


class TrainingCancelled(Exception):
    """Raised inside a step when the caller's ``should_cancel`` says to stop at once."""


@dataclass
class BatchStats:
    """Sums over the micro-batches of a step (or an evaluation), turned into metrics at the end."""

    loss_sum: float = 0.0
    loss_count: float = 0.0  # trained tokens (SFT) or pairs (DPO): what the loss is averaged over
    correct_tokens: int = 0
    scored_tokens: int = 0
    reward_margin_sum: float = 0.0  # DPO only

    def add(self, other: BatchStats) -> None:
        """Accumulate another micro-batch's sums."""
        self.loss_sum += other.loss_sum
        self.loss_count += other.loss_count
        self.correct_tokens += other.correct_tokens
        self.scored_tokens += other.scored_tokens
        self.reward_margin_sum += other.reward_margin_sum

    @property
    def loss(self) -> float:
        """The mean loss."""
        return self.loss_sum / max(self.loss_count, 1)

    @property
    def accuracy(self) -> float:
        """Share of trained tokens the model predicted exactly (its top choice)."""
        return self.correct_tokens / max(self.scored_tokens, 1)

    @property
    def reward_margin(self) -> float:
        """DPO: mean implicit reward of the preferred output minus the non-preferred one."""
        return self.reward_margin_sum / max(self.loss_count, 1)


class Objective(Protocol):
    """What a step minimises, micro-batch by micro-batch."""

    preference: bool  # True for preference objectives, whose metrics include the reward margin

    def loss_denominator(self, examples: Sequence[Example]) -> float:
        """What a step's summed loss is divided by (the same for every micro-batch of the step)."""
        ...

    def forward(self, model: PeftModel, batch: MicroBatch) -> tuple[torch.Tensor, BatchStats]:
        """The micro-batch's summed loss (differentiable when grad is enabled) and its sums."""
        ...


class SupervisedObjective:
    """Supervised fine-tuning: mean negative log-likelihood of the trained tokens of the step."""

    preference = False

    def loss_denominator(self, examples: Sequence[Example]) -> float:
        return sum(sequence.num_trained_tokens for example in examples for sequence in example.sequences)

    def forward(self, model: PeftModel, batch: MicroBatch) -> tuple[torch.Tensor, BatchStats]:
        scores = score_tokens(model, batch)
        loss_sum = -scores.log_probs.sum()
        count = scores.log_probs.numel()
        return loss_sum, BatchStats(
            loss_sum=loss_sum.item(),
            loss_count=count,
            correct_tokens=int(scores.correct.sum()),
            scored_tokens=count,
        )


@dataclass(frozen=True)
class TrainingConfig:
    """How to train: the job's resolved hyperparameters and the worker's knobs."""

    n_epochs: int
    batch_size: int
    learning_rate: float
    seed: int
    max_length: int
    pad_token_id: int
    warmup_steps: int = 0
    lr_decay: bool = True  # linear decay to the end after warm-up; False holds the rate constant
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    packing: bool = True
    micro_batch_tokens: int = 16384
    metrics_interval: int = 5
    shuffle: bool = True  # False keeps the examples' order in every epoch (the benchmark's parity runs)


@dataclass(frozen=True)
class StepMetrics:
    """OpenAI's metrics at one step; validation fields are None when not measured at that step."""

    train_loss: float
    train_mean_token_accuracy: float
    valid_loss: float | None = None
    valid_mean_token_accuracy: float | None = None
    full_valid_loss: float | None = None
    full_valid_mean_token_accuracy: float | None = None
    reward_margin: float | None = None  # DPO only


@dataclass(frozen=True)
class StepReport:
    """What happened in one optimizer step."""

    step: int  # 1-based: the number of steps done
    total_steps: int
    epoch: int  # 1-based
    end_of_epoch: bool
    reports_metrics: bool  # a metrics event is due (interval, epoch end or last step)
    metrics: StepMetrics
    learning_rate: float
    input_tokens: int  # tokens the model read in this step, padding excluded
    seconds: float  # wall time of the step's training, evaluation excluded
    trained_tokens: int  # input tokens of all steps so far (OpenAI's trained_tokens)


class TrainingLoop:
    """Trains ``model`` (a PEFT model whose adapter is the only trainable part) on ``examples``."""

    def __init__(
        self,
        model: PeftModel,
        objective: Objective,
        examples: Sequence[Example],
        config: TrainingConfig,
        *,
        device: torch.device,
        valid_examples: Sequence[Example] = (),
        autocast_dtype: torch.dtype | None = None,
        should_cancel: Callable[[], bool] = lambda: False,
    ) -> None:
        if not examples:
            raise ValueError("nothing to train on")
        self.model = model
        self.objective = objective
        self.examples = list(examples)
        self.valid_examples = list(valid_examples)
        self.config = config
        self.device = device
        self.autocast_dtype = autocast_dtype
        self.should_cancel = should_cancel

        self.steps_per_epoch = math.ceil(len(self.examples) / config.batch_size)
        self.total_steps = self.steps_per_epoch * config.n_epochs
        self.step = 0
        self.trained_tokens = 0
        self._parameters = [parameter for parameter in model.parameters() if parameter.requires_grad]
        self.optimizer = torch.optim.AdamW(
            self._parameters,
            lr=config.learning_rate,
            betas=ADAM_BETAS,
            eps=ADAM_EPSILON,
            weight_decay=config.weight_decay,
            # The fused kernel is one launch per step instead of several per parameter, on CPU and GPU.
            fused=all(parameter.dtype == torch.float32 for parameter in self._parameters),
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._learning_rate_factor())
        self._epoch_orders: dict[int, list[int]] = {}

    def _learning_rate_factor(self) -> Callable[[int], float]:
        """The schedule: linear warm-up to the peak, then linear decay (or constant).

        ``step`` counts the steps already taken. The first step already trains (at
        1/(warmup+1) of the peak) and the last still does (at 1/(decay steps) of it).
        """
        warmup, total, decay = self.config.warmup_steps, self.total_steps, self.config.lr_decay

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / (warmup + 1)
            if not decay:
                return 1.0
            return max(total - step, 1) / max(total - warmup, 1)

        return factor

    # The loop.

    def run(self) -> Iterator[StepReport]:
        """Train from the current step to the end, yielding a report after every step."""
        while self.step < self.total_steps:
            epoch, index = divmod(self.step, self.steps_per_epoch)
            order = self._epoch_order(epoch)
            size = self.config.batch_size
            batch = [self.examples[i] for i in order[index * size : (index + 1) * size]]
            learning_rate = self.scheduler.get_last_lr()[0]

            started = time.perf_counter()
            stats = self._train_step(batch)
            seconds = time.perf_counter() - started

            self.step += 1
            input_tokens = sum(example.num_tokens for example in batch)
            self.trained_tokens += input_tokens
            end_of_epoch = self.step % self.steps_per_epoch == 0
            reports_metrics = (
                self.step % self.config.metrics_interval == 0 or end_of_epoch or self.step == self.total_steps
            )
            yield StepReport(
                step=self.step,
                total_steps=self.total_steps,
                epoch=epoch + 1,
                end_of_epoch=end_of_epoch,
                reports_metrics=reports_metrics,
                metrics=self._metrics(stats, sampled_valid=reports_metrics, full_valid=end_of_epoch),
                learning_rate=learning_rate,
                input_tokens=input_tokens,
                seconds=seconds,
                trained_tokens=self.trained_tokens,
            )

    def _epoch_order(self, epoch: int) -> list[int]:
        if epoch not in self._epoch_orders:
            if self.config.shuffle:
                generator = torch.Generator().manual_seed(self.config.seed * 1_000_003 + epoch)
                order = torch.randperm(len(self.examples), generator=generator).tolist()
            else:
                order = list(range(len(self.examples)))
            self._epoch_orders = {epoch: order}  # only the current epoch's is needed again
        return self._epoch_orders[epoch]

    def _train_step(self, batch: Sequence[Example]) -> BatchStats:
        self.model.train()
        denominator = max(self.objective.loss_denominator(batch), 1)
        stats = BatchStats()
        for micro_batch in self._micro_batches(batch):
            if self.should_cancel():
                raise TrainingCancelled
            with self._autocast():
                loss_sum, micro_stats = self.objective.forward(self.model, micro_batch.to(self.device))
            (loss_sum / denominator).backward()
            stats.add(micro_stats)
        torch.nn.utils.clip_grad_norm_(self._parameters, self.config.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return stats

    def _micro_batches(self, examples: Sequence[Example]) -> list[MicroBatch]:
        return build_micro_batches(
            examples,
            packing=self.config.packing,
            max_length=self.config.max_length,
            micro_batch_tokens=self.config.micro_batch_tokens,
            pad_token_id=self.config.pad_token_id,
        )

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    # Evaluation.

    def evaluate(self, examples: Sequence[Example]) -> BatchStats:
        """The objective's loss and token accuracy on ``examples``, without training."""
        stats = BatchStats()
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad(), self._autocast():
                for micro_batch in self._micro_batches(examples):
                    stats.add(self.objective.forward(self.model, micro_batch.to(self.device))[1])
        finally:
            self.model.train(was_training)
        return stats

    def _metrics(self, train: BatchStats, *, sampled_valid: bool, full_valid: bool) -> StepMetrics:
        valid = full = None
        if self.valid_examples and sampled_valid:
            generator = torch.Generator().manual_seed(self.config.seed * 1_000_003 + 500_009 * self.step)
            picks = torch.randperm(len(self.valid_examples), generator=generator)[: self.config.batch_size]
            valid = self.evaluate([self.valid_examples[i] for i in picks.tolist()])
        if self.valid_examples and full_valid:
            full = self.evaluate(self.valid_examples)
        return StepMetrics(
            train_loss=train.loss,
            train_mean_token_accuracy=train.accuracy,
            valid_loss=valid.loss if valid else None,
            valid_mean_token_accuracy=valid.accuracy if valid else None,
            full_valid_loss=full.loss if full else None,
            full_valid_mean_token_accuracy=full.accuracy if full else None,
            reward_margin=train.reward_margin if self.objective.preference else None,
        )

    # Resuming.

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue this run exactly: adapter, optimizer, schedule, RNG, step."""
        return {
            "step": self.step,
            "trained_tokens": self.trained_tokens,
            "adapter": trainable_state(self.model),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a :meth:`state_dict` of a run with the same examples and configuration."""
        load_trainable_state(self.model, state["adapter"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng_cpu"])
        if state["rng_cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng_cuda"])
        self.step = state["step"]
        self.trained_tokens = state["trained_tokens"]
