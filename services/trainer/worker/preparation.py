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

from services.common.base_models import ResolvedBaseModel
from services.trainer.worker.checkpoints import load_state
from services.trainer.worker.config import WorkerSettings
from services.trainer.worker.data import ExampleSet, load_examples, name_lines
from services.trainer.worker.dpo import PreferenceObjective
from services.trainer.worker.failures import BASE_MODEL_UNAVAILABLE, JobFailure
from services.trainer.worker.hyperparameters import Hyperparameters, resolve_hyperparameters, steps_per_epoch
from services.trainer.worker.lora import ADAPTER_CONFIG, adapted_modules, check_vllm_compatible, lora_config
from services.trainer.worker.memory import MemoryPlan, ModelSize, choose_memory_plan
from services.trainer.worker.models import (
    Placement,
    attach_adapter,
    choose_placement,
    load_base_model,
    load_tokenizer,
    worker_base_model,
)
from services.trainer.worker.results import ResultsLog, message_event
from services.trainer.worker.training import SupervisedObjective, TrainingConfig, TrainingLoop
from tailor.trainer.v1 import job_pb2, worker_service_pb2

log = structlog.get_logger("tailor.worker")

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
    base = worker_base_model(settings, plan)
    tokenizer = load_tokenizer(base.location, revision=base.revision, chat_template=base.spec.chat_template)
    max_length = settings.worker_max_seq_length or plan.max_seq_length or base.max_seq_length
    if base.context_length:  # no truncation length beyond what the model can read
        max_length = min(max_length, base.context_length)
    training = _load_file(inputs.training_path, tokenizer, job, base, max_length, "training_file", post)
    validation = None
    if inputs.validation_path is not None:
        validation = _load_file(
            inputs.validation_path, tokenizer, job, base, max_length, "validation_file", post
        )

    resume_state = load_state(inputs.resume_dir) if inputs.resume_dir else None
    if resume_state:
        hyperparameters = Hyperparameters(**resume_state["hyperparameters"])
    else:
        hyperparameters = resolve_hyperparameters(
            job.method,
            n_examples=len(training),
            base_learning_rate=plan.base_learning_rate or base.lora_learning_rate,
            # The family's rank may exceed what this deployment serves; an entry's own may not.
            default_lora_rank=min(base.lora_rank, settings.max_lora_rank),
            max_lora_rank=settings.max_lora_rank,
        )
        if inputs.adapter_dir:
            hyperparameters = _with_adapter_shape(
                hyperparameters, inputs.adapter_dir, settings.max_lora_rank
            )

    placement = choose_placement(settings.worker_device, settings.worker_dtype)
    model, memory = _load_model(
        settings, base, placement, hyperparameters, inputs.adapter_dir, max_length=max_length, seed=job.seed
    )
    post(message_event(_model_summary(base, model, hyperparameters, max_length)))
    post(message_event(memory.describe(max_length)))
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
        micro_batch_tokens=memory.micro_batch_tokens,
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
    base: ResolvedBaseModel,
    placement: Placement,
    hyperparameters: Hyperparameters,
    adapter_dir: Path | None,
    *,
    max_length: int,
    seed: int,
) -> tuple[PeftModel, MemoryPlan]:
    """The frozen base model on its device, with the trainable adapter (new, or the one continued),
    and how its steps fit in memory (gradient checkpointing is set on the model before the adapter)."""
    base_model = load_base_model(
        base.location,
        placement,
        revision=base.revision,
        attn_implementation=settings.worker_attn_implementation,
    )
    memory = _memory_plan(settings, base_model, placement, max_length)
    target_modules = _target_modules(base)
    if adapter_dir is None:
        _check_target_modules(base, base_model, target_modules)
    torch.manual_seed(seed)  # a new adapter's initial weights
    return attach_adapter(
        base_model,
        config=lora_config(
            hyperparameters.lora_rank,
            hyperparameters.lora_alpha,
            hyperparameters.lora_dropout,
            target_modules=target_modules,
        ),
        adapter_dir=adapter_dir,
        gradient_checkpointing=memory.gradient_checkpointing,
    ), memory


def _memory_plan(
    settings: WorkerSettings, model: torch.nn.Module, placement: Placement, max_length: int
) -> MemoryPlan:
    """:func:`~.memory.choose_memory_plan` for this model and device, with the worker's overrides."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    device = placement.device
    device_memory = None
    if device.type == "cuda":
        device_memory = torch.cuda.get_device_properties(device).total_memory
    forced = settings.worker_gradient_checkpointing
    return choose_memory_plan(
        ModelSize(
            parameters=sum(parameter.numel() for parameter in model.parameters()),
            hidden_size=getattr(config, "hidden_size", None),
            num_layers=getattr(config, "num_hidden_layers", None),
            bytes_per_weight=placement.dtype.itemsize,
        ),
        max_length=max_length,
        device_type=device.type,
        device_memory=device_memory,
        gradient_checkpointing=None if forced == "auto" else forced,
        micro_batch_tokens=settings.worker_micro_batch_tokens or None,
    )


def _model_summary(
    base: ResolvedBaseModel, model: PeftModel, hyperparameters: Hyperparameters, max_length: int
) -> str:
    """The event naming what a job trains: the family, and the adapter's shape and modules."""
    model_type = base.model_type or "unknown"
    return (
        f"Base model {base.name} (family {base.family.model_type}, model_type {model_type}): "
        f"LoRA rank {hyperparameters.lora_rank}, alpha {hyperparameters.lora_alpha:g} on "
        f"{', '.join(adapted_modules(model))}; learning rate {hyperparameters.learning_rate:g}; "
        f"max sequence length {max_length}"
    )


def _target_modules(base: ResolvedBaseModel) -> str | list[str]:
    modules = base.lora_target_modules
    return modules if isinstance(modules, str) else list(modules)


def _check_target_modules(base: ResolvedBaseModel, model: torch.nn.Module, modules: str | list[str]) -> None:
    """Every named target module must exist in the model: PEFT only refuses a list that matches nothing."""
    if isinstance(modules, str):
        return
    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = sorted(set(modules) - present)
    if missing:
        raise JobFailure(
            BASE_MODEL_UNAVAILABLE,
            f"Base model {base.name!r} has no modules named {', '.join(missing)}, which its LoRA target "
            f"modules ({', '.join(modules)}; family {base.family.model_type}) list; set `lora_target_modules` "
            "in its entry of TAILOR_BASE_MODELS.",
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
    base: ResolvedBaseModel,
    max_length: int,
    file_param: str,
    post: PostEvent,
) -> ExampleSet:
    """One of the job's files, tokenized, with events saying what it holds and what was cut.

    Lines longer than the model's context fail the job (:func:`~.data.load_examples`); lines
    longer than the job's max sequence length are named in a warning.
    """
    examples = load_examples(
        path,
        tokenizer,
        preference=job.method.type == job_pb2.METHOD_TYPE_DPO,
        max_length=max_length,
        file_param=file_param,
        context_length=base.context_length,
    )
    name = "Training" if file_param == "training_file" else "Validation"
    summary = f"{len(examples)} {examples.format.label} examples, {examples.num_tokens} tokens"
    post(message_event(f"{name} file: {summary}"))
    long_examples = examples.truncated_examples + examples.skipped_examples
    if long_examples:
        many = "examples are" if long_examples > 1 else "example is"
        post(
            message_event(
                f"{name} file: {long_examples} {many} longer than the max sequence length of "
                f"{examples.max_length} tokens and truncated to it: "
                f"{name_lines(examples.truncated_lines, long_examples)}",
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
