"""LoRA adapters that vLLM can serve: how they are configured, saved and checked before upload.

vLLM loads a PEFT adapter directory (``adapter_config.json`` + ``adapter_model.safetensors``)
and refuses some of what PEFT can produce (docs/research/training.md §3): ranks outside its set, DoRA,
trained biases, ``modules_to_save``, initialisations that alter the base weights, and
weights that are not ``lora_A``/``lora_B`` matrices. :func:`lora_config` only builds adapters
without those, and :func:`check_vllm_compatible` re-checks every saved adapter, so nothing the
serving side would reject is ever uploaded.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, TaskType
from safetensors import safe_open

from services.common.base_models import VLLM_LORA_RANKS
from services.common.model_families import ALL_LINEAR

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_FILES = (ADAPTER_CONFIG, ADAPTER_WEIGHTS)
# PEFT expands ALL_LINEAR to every nn.Linear except the output head, and saves the concrete names.
# init_lora_weights values that change the base model's weights, which a served base would lack.
_BASE_ALTERING_INITS = ("pissa", "olora", "corda", "loftq")
# modules_to_save vLLM tolerates: classification heads, never lm_head or embeddings.
_VLLM_MODULES_TO_SAVE = frozenset({"classifier", "score"})
_LORA_WEIGHT = re.compile(r"\.(lora_A|lora_B|lora_embedding_A|lora_embedding_B)(\.weight)?$")


class IncompatibleAdapter(Exception):
    """A saved adapter that vLLM would refuse; the message lists every reason."""


def lora_config(
    rank: int, alpha: float, dropout: float, target_modules: str | list[str] = ALL_LINEAR
) -> LoraConfig:
    """A LoRA configuration vLLM accepts: no bias, no DoRA, no extra trained modules, default init."""
    return LoraConfig(
        task_type=TaskType.CAUSAL_LM,
        r=rank,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=target_modules,
        bias="none",
        use_dora=False,
        modules_to_save=None,
        init_lora_weights=True,
    )


def adapted_modules(model: PeftModel) -> list[str]:
    """The leaf names of the modules the model's adapter adapts (``all-linear`` resolved), sorted."""
    return sorted(model.peft_config[model.active_adapter].target_modules)


def save_adapter(model: PeftModel, directory: Path, *, base_model_name: str, max_rank: int) -> Path:
    """Save the adapter's two files into ``directory`` and check them; returns the directory.

    ``base_model_name`` replaces the local path PEFT would record, which means nothing on
    another machine: the serving side resolves the configured name instead.
    """
    directory.mkdir(parents=True, exist_ok=True)
    config = model.peft_config["default"]
    local_source = config.base_model_name_or_path
    config.base_model_name_or_path = base_model_name
    try:
        # No embedding weights: the adapter never changes the vocabulary (vLLM would refuse them).
        model.save_pretrained(directory, safe_serialization=True, save_embedding_layers=False)
    finally:
        config.base_model_name_or_path = local_source
    # PEFT adds a model card; the adapter is the two files vLLM reads.
    for extra in directory.iterdir():
        if extra.name not in ADAPTER_FILES:
            extra.unlink()
    check_vllm_compatible(directory, max_rank=max_rank)
    return directory


def check_vllm_compatible(directory: Path, *, max_rank: int) -> None:
    """Raise :class:`IncompatibleAdapter` unless vLLM would load the adapter in ``directory``.

    Mirrors the checks of vLLM's ``PEFTHelper`` and LoRA model loader (vllm 0.33), with
    ``max_rank`` standing for the serving side's ``--max-lora-rank``.
    """
    problems: list[str] = []
    try:
        config = json.loads((directory / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise IncompatibleAdapter(f"unreadable {ADAPTER_CONFIG}: {error}") from None

    if config.get("peft_type") != "LORA":
        problems.append(f"peft_type is {config.get('peft_type')!r}, not 'LORA'")
    ranks = [config.get("r"), *(config.get("rank_pattern") or {}).values()]
    for rank in ranks:
        if rank not in VLLM_LORA_RANKS or rank > max_rank:
            problems.append(f"rank {rank!r} is not one of vLLM's ranks up to {max_rank}")
    if not config.get("lora_alpha"):
        problems.append("lora_alpha is missing")
    if not config.get("target_modules"):
        problems.append("target_modules is empty")
    if config.get("use_dora"):
        problems.append("DoRA (use_dora) is not supported")
    if config.get("bias", "none") != "none":
        problems.append(f"bias is {config['bias']!r}; only 'none' is supported")
    if config.get("lora_bias"):
        problems.append("lora_bias is not supported")
    extra_modules = set(config.get("modules_to_save") or []) - _VLLM_MODULES_TO_SAVE
    if extra_modules:
        problems.append(f"modules_to_save {sorted(extra_modules)} is not supported")
    init = config.get("init_lora_weights", True)
    if isinstance(init, str) and init.lower().startswith(_BASE_ALTERING_INITS):
        problems.append(f"init_lora_weights {init!r} alters the base weights")
    for unsupported in ("layer_replication", "alora_invocation_tokens", "trainable_token_indices"):
        if config.get(unsupported):
            problems.append(f"{unsupported} is not supported")
    if config.get("use_qalora"):
        problems.append("QA-LoRA (use_qalora) is not supported")
    problems += _weight_problems(directory / ADAPTER_WEIGHTS, ranks)

    if problems:
        raise IncompatibleAdapter("adapter is not loadable by vLLM: " + "; ".join(problems))


def _weight_problems(weights_path: Path, ranks: list[object]) -> list[str]:
    if not weights_path.is_file():
        return [f"{ADAPTER_WEIGHTS} is missing"]
    problems = []
    with safe_open(str(weights_path), framework="pt") as weights:
        names = list(weights.keys())
        if not names:
            problems.append(f"{ADAPTER_WEIGHTS} holds no weights")
        for name in names:
            if not _LORA_WEIGHT.search(name):
                problems.append(f"weight {name!r} is not a LoRA matrix")
                continue
            shape = weights.get_slice(name).get_shape()
            # lora_A is (rank, in_features) and lora_B (out_features, rank); embeddings the reverse.
            rank = shape[0] if ".lora_A" in name or ".lora_embedding_B" in name else shape[-1]
            if rank not in ranks:
                problems.append(f"weight {name!r} has rank {rank}, not the configured rank")
    return problems


def trainable_state(model: PeftModel) -> dict[str, torch.Tensor]:
    """The adapter's trainable tensors by parameter name (what training changes)."""
    return {
        name: parameter.detach().clone()
        for name, parameter in model.named_parameters()
        if parameter.requires_grad
    }


def load_trainable_state(model: PeftModel, state: dict[str, torch.Tensor]) -> None:
    """Put tensors saved by :func:`trainable_state` back into ``model``."""
    parameters = dict(model.named_parameters())
    missing = set(state) ^ {name for name, parameter in parameters.items() if parameter.requires_grad}
    if missing:
        raise ValueError(f"saved adapter state does not match the model: {sorted(missing)[:5]}")
    with torch.no_grad():
        for name, tensor in state.items():
            parameters[name].copy_(tensor)
