"""LoRA slots give each row its own adapter's output, the same as peft's mixed batches (the reference)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from services.common.errors import FailedPrecondition
from services.inference.lora_slots import LoraSlots
from tests.integration.inference.adapter_factory import random_adapter


@pytest.fixture
def adapters(tiny_llama, tmp_path: Path) -> dict[str, Path]:  # type: ignore[no-untyped-def]
    """Two random adapters: rank 4 on attention only, rank 8 with rsLoRA on every linear layer."""
    first = random_adapter(
        tiny_llama, tmp_path / "first", rank=4, seed=1, target_modules=["q_proj", "v_proj"]
    )
    second = random_adapter(tiny_llama, tmp_path / "second", rank=8, seed=2)
    config = json.loads((second / "adapter_config.json").read_text())
    (second / "adapter_config.json").write_text(json.dumps({**config, "use_rslora": True}))
    return {"first": first, "second": second}


def test_mixed_rows_match_peft_adapter_names(tiny_llama, adapters: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    from peft import PeftModel

    reference = PeftModel.from_pretrained(copy.deepcopy(tiny_llama), adapters["first"], adapter_name="first")
    reference.load_adapter(adapters["second"], adapter_name="second")
    reference.eval()
    model = copy.deepcopy(tiny_llama)
    slots = LoraSlots(model, slots=4, max_rank=16)
    for name, directory in adapters.items():
        slots.add(name, directory)

    input_ids = torch.randint(3, 300, (4, 7))
    rows = ["second", None, "first", "second"]
    with torch.inference_mode():
        expected = reference(input_ids=input_ids, adapter_names=[r or "__base__" for r in rows]).logits
        with slots.applied(rows, torch.device("cpu")):
            actual = model(input_ids=input_ids).logits
        base = model(input_ids=input_ids).logits
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5)
    assert torch.equal(base[1], actual[1]), "a base row is untouched"
    assert not torch.allclose(base[0], actual[0]), "an adapter row is changed"


def test_removing_an_adapter_frees_its_slot_and_restores_the_base(
    tiny_llama, adapters: dict[str, Path]
) -> None:  # type: ignore[no-untyped-def]
    model = copy.deepcopy(tiny_llama)
    slots = LoraSlots(model, slots=1, max_rank=8)
    input_ids = torch.randint(3, 300, (1, 5))
    with torch.inference_mode():
        base = model(input_ids=input_ids).logits
        slots.add("first", adapters["first"])
        with pytest.raises(FailedPrecondition, match="all 1 adapter slots are taken"):
            slots.add("second", adapters["second"])
        slots.remove("first")
        slots.add("second", adapters["second"])
        slots.remove("second")
        slots.add("first", adapters["first"])
        with slots.applied(["first"], torch.device("cpu")):
            with_first = model(input_ids=input_ids).logits
        slots.remove("first")
        assert slots.names == frozenset()
        assert torch.equal(model(input_ids=input_ids).logits, base)
    assert not torch.allclose(with_first, base)


def test_an_adapter_that_does_not_fit_changes_nothing(
    tiny_llama, adapters: dict[str, Path], tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    model = copy.deepcopy(tiny_llama)
    slots = LoraSlots(model, slots=2, max_rank=4)
    with pytest.raises(FailedPrecondition, match="max rank 4"):
        slots.add("second", adapters["second"])  # rank 8
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "adapter_config.json").write_text((adapters["first"] / "adapter_config.json").read_text())
    weights = load_file(adapters["first"] / "adapter_model.safetensors")
    save_file(
        {k: v for k, v in weights.items() if "layers.1.self_attn.v_proj.lora_B" not in k},
        broken / "adapter_model.safetensors",
    )
    with pytest.raises(FailedPrecondition, match="lacks lora_A or lora_B"):
        slots.add("broken", broken)
    assert slots.names == frozenset()
    slots.add("first", adapters["first"])
    assert slots.names == {"first"}
