"""Adapters are checked against the base model and vLLM's rules before any engine sees them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from services.common.errors import FailedPrecondition
from services.inference.adapter_validation import BaseModelLayout, validate_adapter_dir

LAYOUT = BaseModelLayout(
    linear={"model.layers.0.self_attn.q_proj": (64, 64), "model.layers.0.mlp.down_proj": (128, 64)},
    embedding={"model.embed_tokens": (300, 64)},
)
GOOD_CONFIG = {
    "peft_type": "LORA",
    "r": 8,
    "lora_alpha": 16,
    "target_modules": ["q_proj", "down_proj"],
    "bias": "none",
}


def good_weights(rank: int = 8) -> dict[str, torch.Tensor]:
    prefix = "base_model.model.model.layers.0"
    return {
        f"{prefix}.self_attn.q_proj.lora_A.weight": torch.zeros(rank, 64),
        f"{prefix}.self_attn.q_proj.lora_B.weight": torch.zeros(64, rank),
        f"{prefix}.mlp.down_proj.lora_A.weight": torch.zeros(rank, 128),
        f"{prefix}.mlp.down_proj.lora_B.weight": torch.zeros(64, rank),
    }


def write(directory: Path, config: dict[str, Any] | str, weights: dict[str, torch.Tensor] | bytes) -> Path:
    directory.mkdir()
    (directory / "adapter_config.json").write_text(config if isinstance(config, str) else json.dumps(config))
    if isinstance(weights, bytes):
        (directory / "adapter_model.safetensors").write_bytes(weights)
    else:
        save_file(weights, directory / "adapter_model.safetensors")
    return directory


def check(directory: Path) -> None:
    validate_adapter_dir(directory, LAYOUT, max_lora_rank=16, name="ft:x")


def test_a_good_adapter_passes_with_its_rank_and_size(tmp_path: Path) -> None:
    files = validate_adapter_dir(
        write(tmp_path / "a", GOOD_CONFIG, good_weights()), LAYOUT, max_lora_rank=16, name="ft:x"
    )
    assert files.rank == 8 and files.size_bytes > 0


def test_an_embedding_lora_matching_the_vocabulary_passes(tmp_path: Path) -> None:
    weights = {
        "base_model.model.model.embed_tokens.lora_embedding_A": torch.zeros(8, 300),
        "base_model.model.model.embed_tokens.lora_embedding_B": torch.zeros(64, 8),
    }
    check(write(tmp_path / "a", {**GOOD_CONFIG, "target_modules": ["embed_tokens"]}, weights))


def test_the_real_layout_of_a_model_lists_its_linear_layers(tiny_llama) -> None:  # type: ignore[no-untyped-def]
    layout = BaseModelLayout.of_config(tiny_llama.config)
    assert layout.linear["model.layers.1.mlp.down_proj"] == (128, 64)
    assert layout.embedding["model.embed_tokens"] == (300, 64)
    assert layout == BaseModelLayout.of_model(tiny_llama)


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "not a JSON object"),
        ({**GOOD_CONFIG, "peft_type": "PREFIX_TUNING"}, "only LORA"),
        ({**GOOD_CONFIG, "r": 0}, "positive integer"),
        ({**GOOD_CONFIG, "r": 32}, "LoRA rank 32 is greater than this replica's max_lora_rank 16"),
        ({**GOOD_CONFIG, "rank_pattern": {"q_proj": 64}}, "LoRA rank 64"),
        ({k: v for k, v in GOOD_CONFIG.items() if k != "lora_alpha"}, "lora_alpha"),
        ({**GOOD_CONFIG, "target_modules": []}, "target_modules"),
        ({**GOOD_CONFIG, "modules_to_save": ["lm_head"]}, "modules_to_save"),
        ({**GOOD_CONFIG, "use_dora": True}, "DoRA"),
        ({**GOOD_CONFIG, "bias": "all"}, "biases"),
        ({**GOOD_CONFIG, "init_lora_weights": "pissa_niter_4"}, "changes the base weights"),
    ],
)
def test_configs_vllm_would_refuse_are_refused(tmp_path: Path, config: Any, problem: str) -> None:
    with pytest.raises(FailedPrecondition) as raised:
        check(write(tmp_path / "a", config, good_weights()))
    assert problem in raised.value.message and "ft:x" in raised.value.message


def _renamed(old: str, new: str) -> dict[str, torch.Tensor]:
    return {k.replace(old, new): v for k, v in good_weights().items()}


@pytest.mark.parametrize(
    ("weights", "problem"),
    [
        (b"\x08\x00\x00\x00\x00\x00\x00\x00garbage!", "not a valid safetensors file"),
        (b"", "not a valid safetensors file"),
        ({}, "holds no tensors"),
        (_renamed("q_proj", "qkv_fused"), "has no such layer"),
        (_renamed("lora_A.weight", "magnitude"), "unexpected tensor"),
        (
            {k: v for k, v in good_weights().items() if "q_proj.lora_B" not in k},
            "only one of lora_A and lora_B",
        ),
        (
            {
                **good_weights(),
                "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": torch.zeros(8, 65),
            },
            "needs [r, 64]",
        ),
        (
            {
                **good_weights(),
                "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight": torch.zeros(64, 4),
            },
            "different ranks",
        ),
        (good_weights(rank=32), "rank 32, more than max_lora_rank 16"),
    ],
)
def test_weights_that_do_not_fit_the_base_model_are_refused(
    tmp_path: Path, weights: Any, problem: str
) -> None:
    with pytest.raises(FailedPrecondition) as raised:
        check(write(tmp_path / "a", GOOD_CONFIG, weights))
    assert problem in raised.value.message


def test_a_missing_weights_file_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "a"
    directory.mkdir()
    (directory / "adapter_config.json").write_text(json.dumps(GOOD_CONFIG))
    with pytest.raises(FailedPrecondition, match="adapter_model.safetensors is missing"):
        check(directory)
