"""Saved adapters are the two files vLLM reads, load with PEFT, and pass a check of vLLM's rules."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file, save_file

from services.trainer.worker.lora import IncompatibleAdapter, check_vllm_compatible, lora_config, save_adapter
from services.trainer.worker.models import attach_adapter, choose_placement, load_base_model

LLAMA_LINEAR_LAYERS = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


@pytest.fixture
def saved_adapter(tailor_tiny_dir: Path, tmp_path: Path) -> Path:
    torch.manual_seed(0)
    model = attach_adapter(
        load_base_model(str(tailor_tiny_dir), choose_placement("cpu", "float32")),
        config=lora_config(8, 16, 0.05),
    )
    with torch.no_grad():  # a trained adapter: B is no longer zero
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.02)
    return save_adapter(model, tmp_path / "adapter", base_model_name="tailor-tiny", max_rank=64)


def test_a_saved_adapter_is_two_files_naming_the_base_model_and_every_linear_layer(
    saved_adapter: Path,
) -> None:
    assert {path.name for path in saved_adapter.iterdir()} == {
        "adapter_config.json",
        "adapter_model.safetensors",
    }
    config = json.loads((saved_adapter / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "tailor-tiny"
    assert set(config["target_modules"]) == LLAMA_LINEAR_LAYERS
    assert (config["r"], config["lora_alpha"], config["bias"], config["use_dora"]) == (8, 16, "none", False)
    assert not config.get("modules_to_save")


def test_a_saved_adapter_loads_with_peft_and_changes_the_model(
    saved_adapter: Path, tailor_tiny_dir: Path
) -> None:
    placement = choose_placement("cpu", "float32")
    tokens = torch.tensor([[1, 354, 201, 782, 311]])
    base = load_base_model(str(tailor_tiny_dir), placement)
    base_logits = base(tokens).logits

    tuned = PeftModel.from_pretrained(load_base_model(str(tailor_tiny_dir), placement), saved_adapter)

    assert not torch.allclose(tuned(tokens).logits, base_logits)


def edit_config(adapter: Path, **changes: Any) -> None:
    path = adapter / "adapter_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def add_weight(adapter: Path) -> None:
    path = adapter / "adapter_model.safetensors"
    weights = load_file(path)
    weights["base_model.model.lm_head.weight"] = torch.zeros(4, 4)
    save_file(weights, path)


@pytest.mark.parametrize(
    ("spoil", "reason"),
    [
        (lambda adapter: edit_config(adapter, r=12), "rank 12"),
        (lambda adapter: edit_config(adapter, use_dora=True), "DoRA"),
        (lambda adapter: edit_config(adapter, bias="all"), "bias"),
        (lambda adapter: edit_config(adapter, modules_to_save=["lm_head"]), "modules_to_save"),
        (lambda adapter: edit_config(adapter, init_lora_weights="pissa_niter_4"), "alters the base weights"),
        (lambda adapter: edit_config(adapter, rank_pattern={"q_proj": 128}), "rank 128"),
        (add_weight, "not a LoRA matrix"),
        (lambda adapter: (adapter / "adapter_model.safetensors").unlink(), "missing"),
    ],
)
def test_the_check_refuses_what_vllm_would_refuse(
    saved_adapter: Path, spoil: Callable[[Path], None], reason: str
) -> None:
    check_vllm_compatible(saved_adapter, max_rank=64)

    spoil(saved_adapter)

    with pytest.raises(IncompatibleAdapter, match=reason):
        check_vllm_compatible(saved_adapter, max_rank=64)


def test_a_rank_above_the_serving_sides_maximum_is_refused(saved_adapter: Path) -> None:
    check_vllm_compatible(saved_adapter, max_rank=8)
    edit_config(saved_adapter, r=16)
    with pytest.raises(IncompatibleAdapter, match="rank 16"):
        check_vllm_compatible(saved_adapter, max_rank=8)
