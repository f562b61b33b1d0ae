"""The base model and its tokenizer, where they come from and run, and the LoRA adapter put on top.

The same code serves the CPU (float32) and CUDA (bfloat16 weights, autocast, float32 adapter
weights as PEFT keeps them). A base model that cannot be loaded (a missing directory, a Hugging
Face id that is not in the local cache of an offline machine) or whose chat template does not
mark the assistant's tokens fails the job with ``base_model_unavailable``.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from services.common.base_models import (
    CONFIG_FILE,
    BaseModelSpec,
    ResolvedBaseModel,
    hub_offline,
    resolve_spec,
)
from services.common.errors import TailorError
from services.common.tiny_models.building import without_progress_bars
from services.trainer.worker.config import WorkerSettings
from services.trainer.worker.failures import BASE_MODEL_UNAVAILABLE, JobFailure
from tailor.trainer.v1 import worker_service_pb2

_GENERATION_BLOCK = re.compile(r"\{%-?\s*generation\s*-?%\}")


@dataclass(frozen=True)
class Placement:
    """Where training runs and in which dtype the base weights are held."""

    device: torch.device
    dtype: torch.dtype

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        """The dtype matmuls run in under autocast; None means no autocast (full precision)."""
        return self.dtype if self.dtype != torch.float32 else None


def choose_placement(device: str, dtype: str) -> Placement:
    """Resolve the ``auto`` settings: CUDA when visible, bfloat16 where that GPU supports it."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if dtype == "auto":
        dtype = "bfloat16" if device == "cuda" and torch.cuda.is_bf16_supported() else "float32"
    return Placement(torch.device(device), getattr(torch, dtype))


def worker_base_model(settings: WorkerSettings, plan: worker_service_pb2.TrainingPlan) -> ResolvedBaseModel:
    """The plan's base model as this machine loads it, with its family's effective defaults.

    A built-in model (tailor-tiny) is built under this worker's own data directory: the
    trainer's path for it means nothing inside a Kubernetes pod. Anything else is loaded from
    where the trainer resolved it (a Hugging Face id, from the local hub cache, or a directory
    both can see); a base this worker's settings do not configure gets the defaults of its
    family, read from its config.json.
    """
    spec = settings.base_models.get(plan.base_model)
    try:
        if spec is not None and spec.is_builtin:
            return resolve_spec(plan.base_model, spec, settings)
        if spec is None or spec.source != plan.base_model_source:
            # The trainer's resolution of the entry (an absolute directory), or an entry this
            # worker lacks: the plan's source, with this worker's overrides where it has them.
            overrides = spec.model_dump(exclude={"source"}, exclude_none=True) if spec else {}
            spec = BaseModelSpec(**{**overrides, "source": plan.base_model_source})
        resolved = resolve_spec(plan.base_model, spec, settings)
        if resolved.config.model_type is None and not resolved.is_local and not hub_offline():
            # Online and not downloaded yet: fetch its config.json first, to know its family.
            from huggingface_hub import hf_hub_download

            hf_hub_download(resolved.location, CONFIG_FILE, revision=resolved.revision)
            resolved = resolve_spec(plan.base_model, spec, settings)
        return resolved
    except (TailorError, OSError, ValueError) as error:
        message = error.message if isinstance(error, TailorError) else str(error)
        verb = "built" if spec is not None and spec.is_builtin else "found"
        raise JobFailure(
            BASE_MODEL_UNAVAILABLE, f"Base model {plan.base_model!r} could not be {verb}: {message}"
        ) from error


def load_tokenizer(
    source: str, *, revision: str | None = None, chat_template: str | None = None
) -> PreTrainedTokenizerBase:
    """The base model's tokenizer, with ``chat_template`` (if given) replacing its own."""
    with _loading(source):
        tokenizer = AutoTokenizer.from_pretrained(source, revision=revision)
    if chat_template:
        tokenizer.chat_template = chat_template
    if not tokenizer.chat_template or not _GENERATION_BLOCK.search(str(tokenizer.chat_template)):
        raise JobFailure(
            BASE_MODEL_UNAVAILABLE,
            f"The chat template of base model {source!r} does not mark the assistant's tokens with "
            "{% generation %}, so the tokens to train on are unknown; configure a `chat_template` for it.",
        )
    if tokenizer.pad_token_id is None:
        # Padding is never attended to nor trained on, so any token will do.
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_base_model(
    source: str, placement: Placement, *, revision: str | None = None, attn_implementation: str = "sdpa"
) -> PreTrainedModel:
    """The frozen base model on its device."""
    # from_pretrained draws a progress bar over the weights: noise in a worker's log
    with _loading(source), without_progress_bars():
        model = AutoModelForCausalLM.from_pretrained(
            source, revision=revision, dtype=placement.dtype, attn_implementation=attn_implementation
        )
    model.requires_grad_(False)
    return model.to(placement.device)


def attach_adapter(
    model: PreTrainedModel,
    *,
    config: LoraConfig | None = None,
    adapter_dir: Path | None = None,
    gradient_checkpointing: bool = False,
) -> PeftModel:
    """A trainable LoRA adapter on ``model``: a new one from ``config``, or the one saved in ``adapter_dir``.

    Call ``torch.manual_seed`` first: a new adapter's A matrices are drawn from the global RNG.
    """
    if gradient_checkpointing:
        # Non-reentrant checkpointing needs no input that requires grad (the base is frozen).
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    with warnings.catch_warnings():
        # peft 0.21 still asks transformers for a renamed attribute; nothing for a user to act on.
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        if adapter_dir is not None:
            return PeftModel.from_pretrained(model, adapter_dir, is_trainable=True)
        if config is None:
            raise ValueError("attach_adapter needs a LoRA config or an adapter directory")
        return get_peft_model(model, config)


@contextlib.contextmanager
def _loading(source: str) -> Iterator[None]:
    try:
        yield
    except (OSError, ValueError) as error:
        raise JobFailure(
            BASE_MODEL_UNAVAILABLE, f"Base model {source!r} could not be loaded: {error}"
        ) from error
