"""The base model registry: which base models Tailor trains and serves, and their defaults.

Configured through ``TAILOR_BASE_MODELS`` (a JSON object, name -> spec), which replaces the
default list as a whole. The default lists only ``tailor-tiny``, the built-in model that needs
no download. For example::

    TAILOR_BASE_MODELS='{"tailor-tiny": {"source": "builtin:tailor-tiny"},
                         "qwen2.5-0.5b": {"source": "Qwen/Qwen2.5-0.5B-Instruct", "revision": "main"}}'

:func:`resolve_base_model` turns a name into what ``from_pretrained`` takes. This module does
not import torch (the gateway has none); only resolving a built-in model that still has to be
built does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from services.common import tailor_tiny
from services.common.builtin_models import BUILTIN_MODELS, builtin_model
from services.common.errors import FailedPrecondition, InvalidArgument, shown
from services.common.model_families import ToolCallFormat

if TYPE_CHECKING:
    from services.common.settings import CommonSettings

TAILOR_TINY = tailor_tiny.NAME
BUILTIN_PREFIX = "builtin:"
# LoRA ranks vLLM accepts for --max-lora-rank; an adapter's rank must be one of them.
VLLM_LORA_RANKS = frozenset({1, 8, 16, 32, 64, 128, 256, 320, 512})


class BaseModelSpec(BaseModel):
    """One base model: where its weights come from and the defaults jobs on it start from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str = Field(description="Hugging Face id, local directory, or `builtin:<name>`.")
    revision: str | None = Field(None, description="Hub revision when source is a Hugging Face id.")
    chat_template: str | None = Field(
        None, description="Jinja chat template overriding the tokenizer's own (must mark generation)."
    )
    lora_learning_rate: float = Field(2e-4, gt=0, description="LoRA learning rate at multiplier 1.0.")
    lora_rank: int = Field(16, description="Default LoRA rank (one vLLM accepts).")
    max_seq_length: int = Field(2048, gt=0, description="Training examples are truncated to this.")
    tool_call_format: ToolCallFormat | None = Field(
        None,
        description=(
            "How the chat template writes an assistant's tool calls, so replies are parsed back into "
            "`tool_calls`; empty means the family's (services/common/model_families.py)."
        ),
    )

    @property
    def is_builtin(self) -> bool:
        """Whether the model is built by Tailor itself rather than loaded from a hub or a directory."""
        return self.source.startswith(BUILTIN_PREFIX)

    @property
    def is_local_path(self) -> bool:
        """Whether ``source`` names a directory on this machine rather than a Hugging Face id.

        Explicit path syntax (absolute, ``./``, ``../``, ``~``) always means a directory; a bare
        ``org/name`` is a directory only if one exists, as in ``from_pretrained``.
        """
        if self.is_builtin:
            return False
        if self.source.startswith(("/", "./", "../", "~")):
            return True
        return Path(self.source).is_dir()

    @field_validator("source")
    @classmethod
    def _known_builtin(cls, source: str) -> str:
        if not source.strip():
            raise ValueError("source must not be empty")
        if source.startswith(BUILTIN_PREFIX) and source.removeprefix(BUILTIN_PREFIX) not in BUILTIN_MODELS:
            known = ", ".join(BUILTIN_PREFIX + name for name in sorted(BUILTIN_MODELS))
            raise ValueError(f"unknown built-in model {source!r}; built-in models: {known}")
        return source

    @field_validator("lora_rank")
    @classmethod
    def _rank_vllm_accepts(cls, rank: int) -> int:
        if rank not in VLLM_LORA_RANKS:
            raise ValueError(f"lora_rank must be one vLLM accepts: {sorted(VLLM_LORA_RANKS)}")
        return rank

    @model_validator(mode="after")
    def _revision_only_for_hub(self) -> BaseModelSpec:
        if self.revision is not None and self.is_builtin:
            raise ValueError("revision applies to Hugging Face ids, not to built-in models")
        return self


def default_base_models() -> dict[str, BaseModelSpec]:
    """The registry when ``TAILOR_BASE_MODELS`` is unset: only the built-in tailor-tiny."""
    return {
        TAILOR_TINY: BaseModelSpec(
            source=BUILTIN_PREFIX + TAILOR_TINY,
            # a tiny randomly initialised model learns fast and tolerates a high rate
            lora_learning_rate=2e-3,
            lora_rank=8,
            max_seq_length=512,
            # a Llama, but with a ChatML template and Qwen's (Hermes) tool-call format
            tool_call_format="hermes",
        )
    }


@dataclass(frozen=True)
class ResolvedBaseModel:
    """A configured base model and where to load it from.

    Load it with ``from_pretrained(resolved.location, revision=resolved.revision)``: for a
    built-in or local model ``location`` is a directory and ``revision`` is None; otherwise
    it is a Hugging Face id, downloaded (or found in the hub cache) by transformers.
    """

    name: str
    spec: BaseModelSpec
    location: str
    revision: str | None
    is_local: bool


def resolve_base_model(name: str, settings: CommonSettings, *, build: bool = True) -> ResolvedBaseModel:
    """Resolve a configured base model name to where its weights are.

    A built-in model is built under ``settings.models_dir`` on first use (imports torch), unless
    ``build`` is False: then only its would-be directory is returned, for callers that merely
    validate a name or record a path. Raises :class:`InvalidArgument` (param ``model``) for a
    name that is not configured, and :class:`FailedPrecondition` for a configured local
    directory that does not exist.
    """
    spec = settings.base_models.get(name)
    if spec is None:
        available = ", ".join(sorted(settings.base_models)) or "none"
        raise InvalidArgument(
            f"The model `{shown(name)}` does not exist or is not a base model. "
            f"Available base models: {available}.",
            param="model",
            code="model_not_found",
        )

    if spec.is_builtin:
        builtin = builtin_model(spec.source.removeprefix(BUILTIN_PREFIX))
        location = builtin.ensure(settings.models_dir) if build else builtin.directory(settings.models_dir)
        return ResolvedBaseModel(name, spec, str(location.absolute()), revision=None, is_local=True)

    if spec.is_local_path:
        directory = Path(spec.source).expanduser()
        if not directory.is_dir():
            raise FailedPrecondition(f"Base model `{name}` is configured with a missing directory.")
        return ResolvedBaseModel(name, spec, str(directory.absolute()), revision=None, is_local=True)

    return ResolvedBaseModel(name, spec, spec.source, revision=spec.revision, is_local=False)
