"""The base model registry: which base models Tailor trains and serves, and their defaults.

Configured through ``TAILOR_BASE_MODELS`` (a JSON object, name -> spec), which replaces the
default list as a whole. The default lists only ``tailor-tiny``, the built-in model that needs
no download. For example::

    TAILOR_BASE_MODELS='{"tailor-tiny": {"source": "builtin:tailor-tiny"},
                         "qwen2.5-0.5b": {"source": "Qwen/Qwen2.5-0.5B-Instruct", "revision": "main"}}'

**Defaults come from the model's family.** A base model's family is the ``model_type`` of its
``config.json`` (:mod:`services.common.model_families`): read from the built or configured
directory, or from the local Hugging Face cache for a hub id (never from the network). The
family gives the LoRA target modules, learning rate, rank, max sequence length and tool-call
format; an entry's own value for any of them overrides the family's, and ``family`` names the
``model_type`` to use when ``config.json`` cannot be read (a hub id not downloaded yet).
:class:`ResolvedBaseModel` is the one place the effective values are computed; every service
reads them from there.

**Hugging Face ids** load from the local hub cache (``HF_HOME``, or ``HF_HUB_CACHE``). With
``HF_HUB_OFFLINE=1`` (how the tests run, and how an air-gapped deployment with a pre-populated
cache or volume runs) an id that is not cached is refused where it is first needed: job
creation answers 400 naming ``model`` (:func:`check_base_model_available`) and an inference
replica does not start. When the machine is online (``HF_HUB_OFFLINE`` unset, as the images
ship) an uncached id is allowed: the worker and the inference replica download it on first
use into the same cache, and until then the trainer knows its family only from the entry's
``family`` (else the generic one).

:func:`resolve_base_model` turns a name into what ``from_pretrained`` takes. This module does
not import torch (the gateway has none); only resolving a built-in model that still has to be
built does. huggingface_hub is imported only to look a hub id up in the cache.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from services.common import tailor_tiny
from services.common.builtin_models import BUILTIN_MODELS, builtin_model
from services.common.errors import FailedPrecondition, InvalidArgument, shown
from services.common.model_families import ALL_LINEAR, ModelFamily, ToolCallFormat, family_of

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
    family: str | None = Field(
        None,
        description=(
            "The `model_type` (llama, qwen2, mistral, gemma2, phi3, ...) whose defaults apply when the "
            "model's config.json cannot be read; the config's own `model_type` wins when it can."
        ),
    )
    lora_target_modules: tuple[str, ...] | Literal["all-linear"] | None = Field(
        None, description="Module names the LoRA adapter adapts; empty means the family's."
    )
    lora_learning_rate: float | None = Field(
        None, gt=0, description="LoRA learning rate at multiplier 1.0; empty means the family's."
    )
    lora_rank: int | None = Field(None, description="Default LoRA rank (one vLLM accepts); empty means the family's.")
    max_seq_length: int | None = Field(
        None, gt=0, description="Training examples are truncated to this; empty means the family's."
    )
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
    def _rank_vllm_accepts(cls, rank: int | None) -> int | None:
        if rank is not None and rank not in VLLM_LORA_RANKS:
            raise ValueError(f"lora_rank must be one vLLM accepts: {sorted(VLLM_LORA_RANKS)}")
        return rank

    @field_validator("lora_target_modules")
    @classmethod
    def _some_modules(
        cls, modules: tuple[str, ...] | Literal["all-linear"] | None
    ) -> tuple[str, ...] | Literal["all-linear"] | None:
        if isinstance(modules, tuple) and (not modules or not all(name.strip() for name in modules)):
            raise ValueError(f"lora_target_modules must be module names or {ALL_LINEAR!r}")
        return modules

    @model_validator(mode="after")
    def _revision_only_for_hub(self) -> BaseModelSpec:
        if self.revision is not None and self.is_builtin:
            raise ValueError("revision applies to Hugging Face ids, not to built-in models")
        return self


def default_base_models() -> dict[str, BaseModelSpec]:
    """The registry when ``TAILOR_BASE_MODELS`` is unset: only the built-in tailor-tiny."""
    return {
        # its training defaults and tool-call format are the built-in model's own (builtin_models.py)
        TAILOR_TINY: BaseModelSpec(source=BUILTIN_PREFIX + TAILOR_TINY)
    }


CONFIG_FILE = "config.json"


@dataclass(frozen=True)
class ModelConfig:
    """What Tailor reads from a base model's ``config.json`` without loading the model."""

    model_type: str | None = None
    max_position_embeddings: int | None = None  # the context window, where the config says it

    @classmethod
    def of(cls, config: dict[str, Any]) -> ModelConfig:
        """The fields of a parsed ``config.json`` (a multimodal model's text part where it has one)."""
        text = config.get("text_config") if isinstance(config.get("text_config"), dict) else {}
        positions = config.get("max_position_embeddings") or text.get("max_position_embeddings")
        return cls(
            model_type=config.get("model_type") or None,
            max_position_embeddings=int(positions) if isinstance(positions, int | float) else None,
        )


@dataclass(frozen=True)
class ResolvedBaseModel:
    """A configured base model, where to load it from, and its effective training defaults.

    Load it with ``from_pretrained(resolved.location, revision=resolved.revision)``: for a
    built-in or local model ``location`` is a directory and ``revision`` is None; otherwise
    it is a Hugging Face id, found in the local hub cache (or, online, downloaded) by
    transformers. ``config`` is what its ``config.json`` says, empty when it could not be read
    (a built-in model not built yet whose builder does not declare its type, a hub id not in
    the local cache).

    The properties are the effective values: the entry's own where it sets one, else its
    family's. Every consumer (the trainer's plan, the worker, inference) reads them here.
    """

    name: str
    spec: BaseModelSpec
    location: str
    revision: str | None
    is_local: bool
    config: ModelConfig = ModelConfig()

    @property
    def model_type(self) -> str | None:
        """The family's key: the config's ``model_type``, else the entry's ``family``."""
        return self.config.model_type or self.spec.family

    @property
    def family(self) -> ModelFamily:
        """The model's family (:data:`~services.common.model_families.GENERIC` when unlisted or unknown)."""
        return family_of(self.model_type)

    @property
    def lora_target_modules(self) -> tuple[str, ...] | Literal["all-linear"]:
        """The modules a new adapter adapts."""
        return self.spec.lora_target_modules or self.family.lora_target_modules

    @property
    def lora_learning_rate(self) -> float:
        """The learning rate at multiplier 1.0."""
        return self.spec.lora_learning_rate or self.family.lora_learning_rate

    @property
    def lora_rank(self) -> int:
        """The rank of a job that does not ask for one."""
        return self.spec.lora_rank or self.family.lora_rank

    @property
    def max_seq_length(self) -> int:
        """What training examples are truncated to; never more than the model's context window."""
        length = self.spec.max_seq_length or self.family.max_seq_length
        if self.config.max_position_embeddings:
            length = min(length, self.config.max_position_embeddings)
        return length

    @property
    def context_length(self) -> int | None:
        """The model's context window (``max_position_embeddings``), None when unknown."""
        return self.config.max_position_embeddings

    @property
    def tool_call_format(self) -> ToolCallFormat | None:
        """How the chat template writes tool calls (None: replies are not parsed for them)."""
        return self.spec.tool_call_format or self.family.tool_call_format


def resolve_base_model(name: str, settings: CommonSettings, *, build: bool = True) -> ResolvedBaseModel:
    """Resolve a configured base model name to where its weights are, and read its config.

    A built-in model is built under ``settings.models_dir`` on first use (imports torch), unless
    ``build`` is False: then only its would-be directory is returned, for callers that merely
    validate a name or record a path. Raises :class:`InvalidArgument` (param ``model``) for a
    name that is not configured, and :class:`FailedPrecondition` for a configured local
    directory that does not exist. Never touches the network.
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
    return resolve_spec(name, spec, settings, build=build)


def resolve_spec(
    name: str, spec: BaseModelSpec, settings: CommonSettings, *, build: bool = True
) -> ResolvedBaseModel:
    """:func:`resolve_base_model` for an entry given as such (the worker's for a plan it has no entry for)."""
    if spec.is_builtin:
        builtin = builtin_model(spec.source.removeprefix(BUILTIN_PREFIX))
        location = builtin.ensure(settings.models_dir) if build else builtin.directory(settings.models_dir)
        config = _directory_config(location)
        if config.model_type is None:  # not built yet: the builder knows what it builds
            config = ModelConfig(model_type=builtin.model_type)
        # The entry's own values first, then the built-in model's, then (properties) its family's.
        unset = {key: value for key, value in builtin.entry_defaults.items() if getattr(spec, key) is None}
        return ResolvedBaseModel(name, spec.model_copy(update=unset), str(location.absolute()), None, True, config)

    if spec.is_local_path:
        directory = Path(spec.source).expanduser()
        if not directory.is_dir():
            raise FailedPrecondition(f"Base model `{name}` is configured with a missing directory.")
        return ResolvedBaseModel(name, spec, str(directory.absolute()), None, True, _directory_config(directory))

    cached = cached_hub_file(spec.source, CONFIG_FILE, revision=spec.revision)
    config = _file_config(Path(cached)) if cached else ModelConfig()
    return ResolvedBaseModel(name, spec, spec.source, spec.revision, False, config)


def hub_offline() -> bool:
    """Whether this process may not download from the Hugging Face hub (``HF_HUB_OFFLINE``)."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def cached_hub_file(repo_id: str, filename: str, *, revision: str | None = None) -> str | None:
    """The path of ``filename`` of a hub repo in the local cache, None when it is not there (no network)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo_id, filename, revision=revision)
    except ValueError:  # not a valid repo id
        return None
    return found if isinstance(found, str) else None


def missing_from_hub_cache(resolved: ResolvedBaseModel) -> str | None:
    """Why this offline machine cannot load ``resolved``, or None when it can (or may download it).

    Only a Hugging Face id can be missing here: offline (``HF_HUB_OFFLINE``) and without its
    ``config.json`` in the local cache. Online, an uncached id is downloaded on first use.
    """
    if resolved.is_local or resolved.config.model_type is not None or not hub_offline():
        return None
    if cached_hub_file(resolved.location, CONFIG_FILE, revision=resolved.revision) is not None:
        return None
    from huggingface_hub import constants

    revision = f" at revision `{resolved.revision}`" if resolved.revision else ""
    return (
        f"`{resolved.location}`{revision} is not in the local Hugging Face cache ({constants.HF_HUB_CACHE}) "
        "and downloads are off (HF_HUB_OFFLINE=1); pre-populate the cache (HF_HOME) with it"
    )


def check_base_model_available(resolved: ResolvedBaseModel) -> None:
    """Refuse a base this machine cannot load: :class:`InvalidArgument` naming ``model``.

    See :func:`missing_from_hub_cache`; built-in and local models always pass (a missing
    directory already failed to resolve).
    """
    reason = missing_from_hub_cache(resolved)
    if reason is not None:
        raise InvalidArgument(
            f"The base model `{shown(resolved.name)}` cannot be fine-tuned here: {reason}.",
            param="model",
            code="model_not_available",
        )


def _directory_config(directory: Path) -> ModelConfig:
    return _file_config(directory / CONFIG_FILE)


def _file_config(path: Path) -> ModelConfig:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ModelConfig()
    return ModelConfig.of(config) if isinstance(config, dict) else ModelConfig()
