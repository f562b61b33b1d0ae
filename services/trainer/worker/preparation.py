"""Everything loaded before the first step: the data, the hyperparameters, the model and its adapter.

:func:`prepare` turns what an attempt downloaded (:class:`Inputs`) into a :class:`Prepared`
training loop. It is CPU- and disk-bound work, minutes for a large model, so the attempt runs it
in a worker thread while the event loop keeps the heartbeats going; it touches no network.

- the tokenizer and chat template of the base model, then each file read and tokenized in one
  pass (:func:`~.data.load_examples`), with an event saying what it holds;
- the hyperparameters: "auto" resolved from the training file's size, a resumed job's own, or
  a continued ``ft:`` model's adapter shape (its rank, alpha and dropout);
- the model: the base model placed on its device in its dtype, and the LoRA adapter on top,
  new from the job's seed or the one the job continues;
- the training loop, with the objective of the job's method, at the resumed step if any.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog
import torch
from peft import PeftModel
from transformers import PreTrainedTokenizerBase

from services.common.base_models import BaseModelSpec
from services.trainer.worker.checkpoints import load_state
from services.trainer.worker.config import WorkerSettings
from services.trainer.worker.data import ExampleSet, load_examples
from services.trainer.worker.dpo import PreferenceObjective
from services.trainer.worker.hyperparameters import Hyperparameters, resolve_hyperparameters, steps_per_epoch
from services.trainer.worker.lora import ADAPTER_CONFIG, check_vllm_compatible, lora_config
from services.trainer.worker.models import (
    Placement,
    attach_adapter,
    base_model_source,
    choose_placement,
    load_base_model,
    load_tokenizer,
)
from services.trainer.worker.results import ResultsLog, message_event
from services.trainer.worker.training import SupervisedObjective, TrainingConfig, TrainingLoop
from tailor.trainer.v1 import job_pb2, worker_service_pb2

log = structlog.get_logger("tailor.worker")

# For a base model the plan names but this worker's settings do not configure.
DEFAULT_LORA_RANK = 16
DEFAULT_MAX_SEQ_LENGTH = 2048

PostEvent = Callable[[worker_service_pb2.WorkerEvent], None]


@dataclass(frozen=True)
class Inputs:
    """Local copies of what the job trains from (downloaded by the attempt)."""

    training_path: Path
    validation_path: Path | None = None
    resume_dir: Path | None = None  # the training state of the checkpoint to resume from
    adapter_dir: Path | None = None  # the adapter of the ft: model the job continues


@dataclass
class Prepared:
    """Everything loaded before training starts."""

    hyperparameters: Hyperparameters
    training: ExampleSet
    model: PeftModel
    loop: TrainingLoop
    results: ResultsLog
    resumed_step: int | None = None  # the step of the checkpoint resumed from


def prepare(
    settings: WorkerSettings,
    plan: worker_service_pb2.TrainingPlan,
    inputs: Inputs,
    *,
    post: PostEvent,
    should_cancel: Callable[[], bool],
) -> Prepared:
    """Load the job's data, hyperparameters and model into a training loop; ``post`` sends events."""
    job = plan.job
    spec: BaseModelSpec | None = settings.base_models.get(plan.base_model)
    revision = spec.revision if spec else None
    source = base_model_source(settings, plan, spec)
    tokenizer = load_tokenizer(source, revision=revision, chat_template=spec.chat_template if spec else None)
    max_length = (
        settings.worker_max_seq_length
        or plan.max_seq_length
        or (spec.max_seq_length if spec else DEFAULT_MAX_SEQ_LENGTH)
    )
    training = _load_file(inputs.training_path, tokenizer, job, max_length, "training_file", post)
    validation = None
    if inputs.validation_path is not None:
        validation = _load_file(inputs.validation_path, tokenizer, job, max_length, "validation_file", post)

    resume_state = load_state(inputs.resume_dir) if inputs.resume_dir else None
    if resume_state:
        hyperparameters = Hyperparameters(**resume_state["hyperparameters"])
    else:
        hyperparameters = resolve_hyperparameters(
            job.method,
            n_examples=len(training),
            base_learning_rate=plan.base_learning_rate,
            default_lora_rank=spec.lora_rank if spec else DEFAULT_LORA_RANK,
            max_lora_rank=settings.max_lora_rank,
        )
        if inputs.adapter_dir:
            hyperparameters = _with_adapter_shape(
                hyperparameters, inputs.adapter_dir, settings.max_lora_rank
            )

    placement = choose_placement(settings.worker_device, settings.worker_dtype)
    model = _load_model(
        settings, source, revision, placement, hyperparameters, inputs.adapter_dir, seed=job.seed
    )
    objective = (
        PreferenceObjective(hyperparameters.beta)
        if hyperparameters.beta is not None
        else SupervisedObjective()
    )
    total_steps = steps_per_epoch(len(training), hyperparameters.batch_size) * hyperparameters.n_epochs
    config = TrainingConfig(
        n_epochs=hyperparameters.n_epochs,
        batch_size=hyperparameters.batch_size,
        learning_rate=hyperparameters.learning_rate,
        seed=job.seed,
        max_length=max_length,
        pad_token_id=tokenizer.pad_token_id,
        warmup_steps=math.ceil(settings.worker_warmup_ratio * total_steps),
        packing=settings.worker_packing,
        micro_batch_tokens=settings.worker_micro_batch_tokens,
        metrics_interval=settings.worker_metrics_interval_steps,
    )
    loop = TrainingLoop(
        model,
        objective,
        training.examples,
        config,
        device=placement.device,
        valid_examples=validation.examples if validation else (),
        autocast_dtype=placement.autocast_dtype,
        should_cancel=should_cancel,
    )
    prepared = Prepared(hyperparameters, training, model, loop, ResultsLog())
    if resume_state:
        loop.load_state_dict(resume_state["loop"])
        prepared.results = ResultsLog(resume_state["results"])
        prepared.resumed_step = loop.step
        post(message_event(f"Resuming from the checkpoint at step {loop.step}"))
    log.info(
        "prepared",
        device=str(placement.device),
        dtype=str(placement.dtype),
        total_steps=total_steps,
        hyperparameters=dataclasses.asdict(hyperparameters),
    )
    return prepared


def _load_model(
    settings: WorkerSettings,
    source: str,
    revision: str | None,
    placement: Placement,
    hyperparameters: Hyperparameters,
    adapter_dir: Path | None,
    *,
    seed: int,
) -> PeftModel:
    """The frozen base model on its device, with the trainable adapter (new, or the one continued)."""
    base_model = load_base_model(
        source, placement, revision=revision, attn_implementation=settings.worker_attn_implementation
    )
    torch.manual_seed(seed)  # a new adapter's initial weights
    return attach_adapter(
        base_model,
        config=lora_config(
            hyperparameters.lora_rank, hyperparameters.lora_alpha, hyperparameters.lora_dropout
        ),
        adapter_dir=adapter_dir,
        gradient_checkpointing=settings.worker_gradient_checkpointing,
    )


def _with_adapter_shape(
    hyperparameters: Hyperparameters, adapter_dir: Path, max_rank: int
) -> Hyperparameters:
    """Continuing an ``ft:`` model keeps its adapter's rank, alpha and dropout."""
    check_vllm_compatible(adapter_dir, max_rank=max_rank)
    config = json.loads((adapter_dir / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    return dataclasses.replace(
        hyperparameters,
        lora_rank=config["r"],
        lora_alpha=float(config["lora_alpha"]),
        lora_dropout=float(config.get("lora_dropout") or 0.0),
    )


def _load_file(
    path: Path,
    tokenizer: PreTrainedTokenizerBase,
    job: job_pb2.Job,
    max_length: int,
    file_param: str,
    post: PostEvent,
) -> ExampleSet:
    """One of the job's files, tokenized, with events saying what it holds and what was cut."""
    examples = load_examples(
        path,
        tokenizer,
        preference=job.method.type == job_pb2.METHOD_TYPE_DPO,
        max_length=max_length,
        file_param=file_param,
    )
    name = "Training" if file_param == "training_file" else "Validation"
    summary = f"{len(examples)} {examples.format.label} examples, {examples.num_tokens} tokens"
    post(message_event(f"{name} file: {summary}"))
    if examples.truncated_examples:
        post(
            message_event(
                f"{name} file: {examples.truncated_examples} examples are longer than {examples.max_length} "
                "tokens and were truncated",
                warning=True,
            )
        )
    if examples.skipped_examples:
        post(
            message_event(
                f"{name} file: {examples.skipped_examples} examples have no assistant tokens within "
                f"the first {examples.max_length} tokens and were skipped",
                warning=True,
            )
        )
    return examples
