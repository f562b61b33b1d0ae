"""Checkpoints and adapters in the object store: where they go and what they hold.

Under a job's output prefix (``orgs/{org}/jobs/{job_id}/``)::

    checkpoints/step-{N}/adapter/adapter_config.json        the PEFT adapter at step N, servable
    checkpoints/step-{N}/adapter/adapter_model.safetensors  as the checkpoint model ft:...:ckpt-step-N
    checkpoints/step-{N}/state/training_state.pt            what resuming at step N needs
    adapter/adapter_config.json                             the final adapter
    adapter/adapter_model.safetensors

The training state is one ``torch.save`` file: the training loop's state (adapter weights,
optimizer, schedule, RNG, step, trained tokens), the resolved hyperparameters and the results
rows so far. It holds only tensors and plain Python values and is read back with
``weights_only=True``, so loading a checkpoint never runs code from it. Moving them to and
from the store is :mod:`.transfers`' job.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

STATE_FILE = "training_state.pt"
# Bumped when the state's layout changes; a state of another version is not resumed from.
STATE_VERSION = 1


@dataclass(frozen=True)
class CheckpointLocation:
    """Object store prefixes (ending in ``/``) of one checkpoint's adapter and training state."""

    adapter_prefix: str
    state_prefix: str


def checkpoint_location(output_prefix: str, step: int) -> CheckpointLocation:
    """Where the checkpoint at ``step`` goes under a job's output prefix."""
    base = f"{as_prefix(output_prefix)}checkpoints/step-{step}/"
    return CheckpointLocation(adapter_prefix=f"{base}adapter/", state_prefix=f"{base}state/")


def final_adapter_prefix(output_prefix: str) -> str:
    """Where the final adapter goes under a job's output prefix."""
    return f"{as_prefix(output_prefix)}adapter/"


def save_state(directory: Path, state: dict[str, Any]) -> Path:
    """Write a training state into ``directory``; returns the directory."""
    directory.mkdir(parents=True, exist_ok=True)
    torch.save({"version": STATE_VERSION, **state}, directory / STATE_FILE)
    return directory


def load_state(directory: Path) -> dict[str, Any]:
    """Read a training state written by :func:`save_state`; ValueError if it is not one."""
    state = torch.load(directory / STATE_FILE, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        raise ValueError(f"{STATE_FILE} is not a version {STATE_VERSION} training state")
    return state


def as_prefix(prefix: str) -> str:
    """``prefix`` ending in ``/``, as object store prefixes of directories do."""
    return prefix if prefix.endswith("/") else f"{prefix}/"
