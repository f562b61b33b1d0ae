"""Each family's LoRA target modules are real module names of that architecture, and adapt all of it.

For every family of services/common/model_families.py, a tiny randomly initialised model is
built from transformers' own config class for its ``model_type``. The family's target
modules must all exist in it, and PEFT with them must adapt every linear projection of every
attention and MLP block: a name that matched nothing, or a projection left out (a fused
``qkv_proj`` listed as ``q_proj``...), fails here rather than training a silently smaller adapter.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
from peft.tuners.lora import LoraLayer
from transformers import AutoConfig, AutoModelForCausalLM

from services.common.base_models import BaseModelSpec, ModelConfig, ResolvedBaseModel
from services.common.model_families import ALL_LINEAR, FAMILIES, GENERIC
from services.trainer.worker.lora import adapted_modules, lora_config
from services.trainer.worker.models import attach_adapter

# Small enough to build in milliseconds; head_dim 16, grouped-query attention as the real ones.
TINY = {
    "vocab_size": 128,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 256,
    # within the tiny vocabulary (Phi-3's defaults point past it)
    "bos_token_id": 1,
    "eos_token_id": 2,
    "pad_token_id": 0,
}


def tiny_model(model_type: str) -> torch.nn.Module:
    torch.manual_seed(0)
    config = AutoConfig.for_model(model_type, **TINY)
    return AutoModelForCausalLM.from_config(config)


def decoder_projections(model: torch.nn.Module) -> set[str]:
    """Qualified names of every linear layer inside the decoder blocks (attention and MLP)."""
    return {
        name
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and ".layers." in name
    }


@pytest.mark.parametrize("model_type", sorted(FAMILIES))
def test_the_family_target_modules_exist_and_adapt_every_attention_and_mlp_projection(model_type: str) -> None:
    family = FAMILIES[model_type]
    assert family.lora_target_modules != ALL_LINEAR, "a listed family names its modules"
    model = tiny_model(model_type)
    assert model.config.model_type == model_type
    projections = decoder_projections(model)
    leaf_names = {name.rsplit(".", 1)[-1] for name in projections}
    assert set(family.lora_target_modules) == leaf_names, "each name exists, and none is missing"

    peft_model = attach_adapter(
        model, config=lora_config(8, 16.0, 0.0, target_modules=list(family.lora_target_modules))
    )

    adapted = {
        name.removeprefix("base_model.model.")
        for name, module in peft_model.named_modules()
        if isinstance(module, LoraLayer)
    }
    assert adapted == projections  # every projection of every layer, nothing else
    assert adapted_modules(peft_model) == sorted(family.lora_target_modules)


@pytest.mark.parametrize("model_type", sorted(FAMILIES))
def test_a_base_of_the_family_takes_its_defaults_unless_its_entry_overrides_them(model_type: str) -> None:
    family = FAMILIES[model_type]
    config = ModelConfig(model_type=model_type, max_position_embeddings=32768)
    resolved = ResolvedBaseModel("m", BaseModelSpec(source="Org/Name"), "Org/Name", None, False, config)
    assert resolved.family is family
    assert resolved.lora_target_modules == family.lora_target_modules
    assert (resolved.lora_learning_rate, resolved.lora_rank, resolved.max_seq_length) == (
        family.lora_learning_rate,
        family.lora_rank,
        family.max_seq_length,
    )
    assert resolved.tool_call_format == family.tool_call_format

    spec = BaseModelSpec(
        source="Org/Name",
        lora_target_modules=("q_proj", "v_proj"),
        lora_learning_rate=5e-5,
        lora_rank=32,
        max_seq_length=8192,
        tool_call_format="hermes",
    )
    overridden = ResolvedBaseModel("m", spec, "Org/Name", None, False, config)
    assert overridden.lora_target_modules == ("q_proj", "v_proj")
    assert (overridden.lora_learning_rate, overridden.lora_rank, overridden.max_seq_length) == (5e-5, 32, 8192)
    assert overridden.tool_call_format == "hermes"


def test_the_config_model_type_wins_and_the_entry_family_is_the_fallback() -> None:
    spec = BaseModelSpec(source="Org/Name", family="gemma2")
    unread = ResolvedBaseModel("m", spec, "Org/Name", None, False, ModelConfig())
    assert unread.family is FAMILIES["gemma2"]
    read = ResolvedBaseModel("m", spec, "Org/Name", None, False, ModelConfig(model_type="qwen2"))
    assert read.family is FAMILIES["qwen2"]
    unknown = ResolvedBaseModel("m", BaseModelSpec(source="x/y"), "x/y", None, False, ModelConfig("gpt2"))
    assert unknown.family is GENERIC and unknown.lora_target_modules == ALL_LINEAR


def test_max_seq_length_never_exceeds_the_context_window() -> None:
    config = ModelConfig(model_type="llama", max_position_embeddings=1024)
    resolved = ResolvedBaseModel("m", BaseModelSpec(source="x/y"), "x/y", None, False, config)
    assert resolved.max_seq_length == 1024 and resolved.context_length == 1024
