"""Checking a downloaded adapter before any engine sees it.

An adapter that cannot be served must fail its own request with a message that says
why, and never reach the engine: vLLM loads adapters inside an engine step, and peft
leaves half-created layers behind when a load fails. So every adapter directory is
checked against the base model and against what vLLM 0.26 accepts:

- ``adapter_config.json`` is a PEFT LoRA config: ``peft_type`` LORA, a rank within
  ``max_lora_rank``, ``lora_alpha`` and ``target_modules`` present; no
  ``modules_to_save``, DoRA, bias training, aLoRA, layer replication, or initialisations
  that rewrite the base weights (vLLM refuses all of these);
- ``adapter_model.safetensors`` parses; every tensor is a ``lora_A``/``lora_B`` (or
  embedding) weight of a module the base model has, with that module's shapes and a rank
  within the limit, and every ``A`` has its ``B``.

Any failure is FAILED_PRECONDITION naming the adapter and the problem. Only the file
header is read for shapes (safetensors' ``safe_open``), not the tensors.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from services.common.errors import FailedPrecondition

if TYPE_CHECKING:
    import torch
    from transformers import PretrainedConfig

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"

# PEFT's saved tensor names: base_model.model.<module path>.<lora_A|lora_B|...>.weight
LORA_TENSOR_NAME = re.compile(
    r"^base_model\.model\.(?P<module>.+)\.(?P<part>lora_A|lora_B|lora_embedding_A|lora_embedding_B)(?:\.weight)?$"
)
# init_lora_weights values that change the base weights when applied (vLLM 0.33 refuses them).
_BASE_REWRITING_INITS = ("pissa", "olora", "corda", "loftq")


@dataclass(frozen=True)
class BaseModelLayout:
    """What LoRA can attach to in a base model.

    ``linear``: module path -> (in_features, out_features); ``embedding``: module path ->
    (num_embeddings, embedding_dim). Paths are relative to the causal LM (``model.layers.0.mlp.up_proj``),
    as PEFT writes them after its ``base_model.model.`` prefix.
    """

    linear: Mapping[str, tuple[int, int]]
    embedding: Mapping[str, tuple[int, int]]

    @cached_property
    def linear_names(self) -> frozenset[str]:
        """The leaf names of the linear modules (``q_proj``), as an adapter's target_modules lists them."""
        return frozenset(path.rsplit(".", 1)[-1] for path in self.linear)

    @classmethod
    def of_model(cls, model: torch.nn.Module) -> BaseModelLayout:
        """The layout of an instantiated model (its modules' shapes; weights are not read)."""
        from torch import nn

        linear: dict[str, tuple[int, int]] = {}
        embedding: dict[str, tuple[int, int]] = {}
        for path, module in model.named_modules():
            if isinstance(module, nn.Linear):
                linear[path] = (module.in_features, module.out_features)
            elif isinstance(module, nn.Embedding):
                embedding[path] = (module.num_embeddings, module.embedding_dim)
        return cls(linear, embedding)

    @classmethod
    def of_config(cls, config: PretrainedConfig) -> BaseModelLayout:
        """The layout of the model ``config`` describes, built on the meta device (no memory, no weights)."""
        import torch
        from transformers import AutoModelForCausalLM

        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
        return cls.of_model(model)


@dataclass(frozen=True)
class AdapterFiles:
    """A checked adapter directory: its rank and size on disk."""

    rank: int
    size_bytes: int


def check_target_modules(target_modules: Sequence[str], layout: BaseModelLayout, *, name: str) -> None:
    """Refuse, before any download, an adapter the registry says adapts modules the base model lacks."""
    missing = sorted(set(target_modules) - layout.linear_names)
    if missing:
        raise _refuse(name, f"it adapts {', '.join(missing)}, which this replica's base model does not have")


def validate_adapter_dir(
    directory: Path,
    layout: BaseModelLayout,
    *,
    max_lora_rank: int,
    name: str,
    expected_modules: Sequence[str] = (),
) -> AdapterFiles:
    """Check the adapter in ``directory``; FailedPrecondition saying what is wrong (see the module docstring).

    ``expected_modules``: the target modules the registry recorded for the adapter; files
    that adapt other modules are not the adapter the registry describes.
    """
    config = _read_config(directory / CONFIG_FILE, name)
    rank = _check_config(config, max_lora_rank, name)
    recorded = config.get("target_modules")
    if expected_modules and isinstance(recorded, list) and set(recorded) != set(expected_modules):
        raise _refuse(
            name,
            f"its files adapt {sorted(recorded)} but the model registry recorded {sorted(expected_modules)}",
        )
    _check_weights(directory / WEIGHTS_FILE, layout, max_lora_rank, name)
    size = sum(path.stat().st_size for path in directory.iterdir() if path.is_file())
    return AdapterFiles(rank=rank, size_bytes=size)


def _refuse(name: str, problem: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"adapter `{name}` cannot be served: {problem}", param="model", code="invalid_adapter"
    )


def _read_config(path: Path, name: str) -> dict[str, Any]:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise _refuse(name, f"{CONFIG_FILE} is missing") from None
    except (UnicodeDecodeError, ValueError):
        raise _refuse(name, f"{CONFIG_FILE} is not valid JSON") from None
    if not isinstance(config, dict):
        raise _refuse(name, f"{CONFIG_FILE} is not a JSON object")
    return config


def _check_config(config: dict[str, Any], max_lora_rank: int, name: str) -> int:
    if config.get("peft_type") != "LORA":
        raise _refuse(name, f"peft_type is {config.get('peft_type')!r}, only LORA adapters are served")
    rank = config.get("r")
    if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
        raise _refuse(name, f"rank r must be a positive integer, got {rank!r}")
    ranks = [rank, *(config.get("rank_pattern") or {}).values()]
    if max(ranks) > max_lora_rank:
        raise _refuse(
            name, f"LoRA rank {max(ranks)} is greater than this replica's max_lora_rank {max_lora_rank}"
        )
    if not isinstance(config.get("lora_alpha"), int | float):
        raise _refuse(name, "lora_alpha is missing")
    if not config.get("target_modules"):
        raise _refuse(name, "target_modules is missing")
    if config.get("modules_to_save"):
        raise _refuse(name, "modules_to_save (fully trained layers) is not supported by multi-LoRA serving")
    if config.get("use_dora"):
        raise _refuse(name, "DoRA adapters are not supported")
    if config.get("bias", "none") != "none" or config.get("lora_bias"):
        raise _refuse(name, "adapters that train biases are not supported")
    if config.get("alora_invocation_tokens") or config.get("layer_replication"):
        raise _refuse(name, "aLoRA and layer replication are not supported")
    init = config.get("init_lora_weights")
    if isinstance(init, str) and init.lower().startswith(_BASE_REWRITING_INITS):
        raise _refuse(name, f"init_lora_weights={init!r} changes the base weights; convert the adapter first")
    return rank


def _check_weights(path: Path, layout: BaseModelLayout, max_lora_rank: int, name: str) -> None:
    shapes = _tensor_shapes(path, name)
    if not shapes:
        raise _refuse(name, f"{WEIGHTS_FILE} holds no tensors")
    parts_by_module: dict[str, dict[str, tuple[int, ...]]] = {}
    for tensor_name, shape in shapes.items():
        match = LORA_TENSOR_NAME.match(tensor_name)
        if match is None:
            raise _refuse(name, f"unexpected tensor {tensor_name!r} (only LoRA A/B weights are supported)")
        parts_by_module.setdefault(match["module"], {})[match["part"]] = shape
    for module, parts in parts_by_module.items():
        if "lora_A" in parts or "lora_B" in parts:
            _check_pair(module, parts, "lora_A", "lora_B", layout.linear, max_lora_rank, name)
        if "lora_embedding_A" in parts or "lora_embedding_B" in parts:
            _check_pair(
                module, parts, "lora_embedding_A", "lora_embedding_B", layout.embedding, max_lora_rank, name
            )


def _check_pair(
    module: str,
    parts: dict[str, tuple[int, ...]],
    a_name: str,
    b_name: str,
    modules: Mapping[str, tuple[int, int]],
    max_lora_rank: int,
    name: str,
) -> None:
    # A linear layer's LoRA is B @ A with A: [r, in] and B: [out, r]; an embedding's is
    # A: [r, num_embeddings] and B: [embedding_dim, r]. Both read as (in, out) from the layout.
    if module not in modules:
        raise _refuse(name, f"it targets `{module}`, which the base model has no such layer for")
    if a_name not in parts or b_name not in parts:
        raise _refuse(name, f"`{module}` has only one of {a_name} and {b_name}")
    expected_in, expected_out = modules[module]
    a_shape, b_shape = parts[a_name], parts[b_name]
    if len(a_shape) != 2 or len(b_shape) != 2 or a_shape[1] != expected_in or b_shape[0] != expected_out:
        raise _refuse(
            name,
            f"`{module}` has shapes {list(a_shape)} and {list(b_shape)}; the base model needs "
            f"[r, {expected_in}] and [{expected_out}, r]",
        )
    if a_shape[0] != b_shape[1]:
        raise _refuse(
            name, f"`{module}` has different ranks in {a_name} ({a_shape[0]}) and {b_name} ({b_shape[1]})"
        )
    if a_shape[0] > max_lora_rank:
        raise _refuse(name, f"`{module}` has rank {a_shape[0]}, more than max_lora_rank {max_lora_rank}")


def _tensor_shapes(path: Path, name: str) -> dict[str, tuple[int, ...]]:
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        raise _refuse(name, f"{WEIGHTS_FILE} is missing")
    try:
        with safe_open(str(path), framework="pt") as weights:
            return {key: tuple(weights.get_slice(key).get_shape()) for key in weights.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as error:
        raise _refuse(name, f"{WEIGHTS_FILE} is not a valid safetensors file ({error})") from None
