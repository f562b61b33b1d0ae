"""Many LoRA adapters in one forward pass: a slot per adapter, applied to each batch row by gathered matmuls.

Every linear layer an adapter targets gets three pre-allocated tensors, one entry (slot)
per adapter the engine can hold: ``A`` ``[slots + 1, max_rank, in]``, ``B``
``[slots + 1, out, max_rank]`` and the scaling ``[slots + 1]``. Slot 0 stays zero: it is
the bare base model. A forward hook on the layer adds, for each row of the batch,

    delta[row] = (x[row] @ A[slot[row]]^T) @ B[slot[row]]^T * scale[slot[row]]

as two batched matmuls over rows whose ``A`` and ``B`` were gathered by the row's slot.
The cost is the same whether the batch mixes one adapter or sixty-four: one gather and two
``bmm`` per layer, the way Punica/S-LoRA kernels (and vLLM's) treat a batch, in plain torch.

peft's own mixed batches (``adapter_names``) were measured first and are not used for
serving: peft scans every module of the model on each forward to install its hooks (a
cost that grows with each loaded adapter, since each adds modules to every layer) and
runs each distinct adapter's rows as a separate gather, two matmuls and a scatter. Measured
on tailor-tiny (CPU), a decode step with 8 adapters mixed took 3.5x the base model's time
with 8 adapters loaded and 14x with 64 loaded, and each adapter load slowed from ~50 ms to
~1 s as 64 accumulated. peft's mixed batch remains the reference these slots are tested
against (same logits).

Adapters are read with peft's ``LoraConfig`` (rank, alpha, rsLoRA, alpha patterns) and
safetensors; a load is parsed and checked completely before any slot is written, so a
failed load leaves nothing behind. Ranks below ``max_rank`` are zero-padded.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from services.common.errors import FailedPrecondition
from services.inference.adapter_validation import LORA_TENSOR_NAME, WEIGHTS_FILE


class LoraSlots:
    """The adapters of one model, each in a slot of every layer it targets; see the module docstring."""

    def __init__(self, model: nn.Module, *, slots: int, max_rank: int) -> None:
        self._linears = {
            path: module for path, module in model.named_modules() if isinstance(module, nn.Linear)
        }
        self._slots = slots
        self._max_rank = max_rank
        self._layers: dict[str, _SlotLayer] = {}
        self._free = list(range(slots, 0, -1))  # popped from the end: 1, 2, ...
        self._slot_of: dict[str, int] = {}
        # The slot of each batch row during a forward pass; None: every row is the base model.
        self.row_slots: torch.Tensor | None = None

    def __contains__(self, name: object) -> bool:
        return name in self._slot_of

    @property
    def names(self) -> frozenset[str]:
        """The adapters loaded."""
        return frozenset(self._slot_of)

    def add(self, name: str, directory: Path) -> None:
        """Load the PEFT adapter in ``directory`` into a free slot; FailedPrecondition if it does not fit."""
        if name in self._slot_of:
            return
        if not self._free:
            raise FailedPrecondition(
                f"adapter `{name}` could not be loaded: all {self._slots} adapter slots are taken"
            )
        weights = self._read(name, directory)  # everything checked before any slot changes
        slot = self._free.pop()
        for path, (a, b, scale) in weights.items():
            self._layer(path).write(slot, a, b, scale)
        self._slot_of[name] = slot

    def remove(self, name: str) -> None:
        """Clear the adapter's slot in every layer and free it."""
        slot = self._slot_of.pop(name, None)
        if slot is None:
            return
        for layer in self._layers.values():
            layer.clear(slot)
        self._free.append(slot)

    @contextlib.contextmanager
    def applied(self, adapters: Sequence[str | None], device: torch.device) -> Iterator[None]:
        """Apply ``adapters[row]`` (None: no adapter) to each batch row of the forward passes in the block."""
        slots = [0 if adapter is None else self._slot_of[adapter] for adapter in adapters]
        self.row_slots = torch.tensor(slots, device=device) if any(slots) else None
        try:
            yield
        finally:
            self.row_slots = None

    def _layer(self, path: str) -> _SlotLayer:
        if path not in self._layers:
            self._layers[path] = _SlotLayer(self, self._linears[path], self._slots, self._max_rank)
        return self._layers[path]

    def _read(self, name: str, directory: Path) -> dict[str, tuple[torch.Tensor, torch.Tensor, float]]:
        """module path -> (A, B, scaling) of the adapter, checked against the model."""
        from peft import LoraConfig
        from safetensors.torch import load_file

        def refuse(problem: str) -> FailedPrecondition:
            return FailedPrecondition(
                f"adapter `{name}` could not be loaded: {problem}", code="invalid_adapter"
            )

        try:
            config = LoraConfig.from_pretrained(str(directory))
            tensors = load_file(directory / WEIGHTS_FILE)
        except Exception as error:  # unreadable config or weights: the adapter's fault, not the server's
            raise refuse(str(error)) from error
        parts: dict[str, dict[str, torch.Tensor]] = {}
        for key, tensor in tensors.items():
            match = LORA_TENSOR_NAME.match(key)
            if match is None:
                raise refuse(f"unexpected tensor {key!r}")
            if match["part"].startswith("lora_embedding"):
                raise refuse("LoRA on embeddings is not supported by the hf engine")
            parts.setdefault(match["module"], {})[match["part"]] = tensor
        weights = {}
        for path, pair in parts.items():
            linear = self._linears.get(path)
            a, b = pair.get("lora_A"), pair.get("lora_B")
            if linear is None or a is None or b is None:
                raise refuse(f"`{path}` is not a linear layer of the base model, or lacks lora_A or lora_B")
            rank = a.shape[0]
            if (
                a.shape != (rank, linear.in_features)
                or b.shape != (linear.out_features, rank)
                or rank > self._max_rank
            ):
                raise refuse(
                    f"`{path}` has shapes {list(a.shape)} and {list(b.shape)} with max rank {self._max_rank}"
                )
            alpha = _pattern_value(config.alpha_pattern, path, config.lora_alpha)
            scale = alpha / math.sqrt(rank) if config.use_rslora else alpha / rank
            weights[path] = (a, b, scale)
        if not weights:
            raise refuse("it holds no LoRA weights")
        return weights


class _SlotLayer:
    """One linear layer's adapter slots and the forward hook that applies them."""

    def __init__(self, owner: LoraSlots, linear: nn.Linear, slots: int, max_rank: int) -> None:
        like: dict[str, Any] = {"dtype": linear.weight.dtype, "device": linear.weight.device}
        self._owner = owner
        self._a = torch.zeros(slots + 1, max_rank, linear.in_features, **like)
        self._b = torch.zeros(slots + 1, linear.out_features, max_rank, **like)
        self._scale = torch.zeros(slots + 1, **like)
        linear.register_forward_hook(self._apply)

    def write(self, slot: int, a: torch.Tensor, b: torch.Tensor, scale: float) -> None:
        rank = a.shape[0]
        self.clear(slot)
        self._a[slot, :rank] = a
        self._b[slot, :, :rank] = b
        self._scale[slot] = scale

    def clear(self, slot: int) -> None:
        self._a[slot].zero_()
        self._b[slot].zero_()
        self._scale[slot] = 0.0

    def _apply(
        self, module: nn.Module, args: tuple[torch.Tensor, ...], output: torch.Tensor
    ) -> torch.Tensor | None:
        rows = self._owner.row_slots
        if rows is None:
            return None  # keep the base layer's output
        x = args[0]  # [rows, tokens, in]
        down = torch.bmm(x, self._a.index_select(0, rows).transpose(1, 2))
        up = torch.bmm(down, self._b.index_select(0, rows).transpose(1, 2))
        return output + up * self._scale.index_select(0, rows).view(-1, 1, 1)


def _pattern_value(patterns: dict[str, Any], path: str, default: Any) -> Any:
    """peft's per-module override (``alpha_pattern``): the first key matching the end of ``path``."""
    for key, value in (patterns or {}).items():
        if re.match(rf"(.*\.)?({key})$", path):
            return value
    return default
