"""What the vllm engine translates, tested without vLLM (tests/integration/inference runs it)."""

from __future__ import annotations

import pytest

from services.common.errors import TailorError, Unavailable
from services.inference.sampling import SamplingSettings
from services.inference.vllm_engine import (
    LoRAIds,
    cpu_backend_environment,
    finish_reason_from_vllm,
    lora_slots_for,
    sampling_params_kwargs,
)


def test_lora_ids_are_stable_per_name_and_never_shared() -> None:
    ids = LoRAIds()
    first = [ids.id_for(name) for name in ["ft:a", "ft:b", "ft:a", "ft:c", "ft:b"]]
    assert first == [1, 2, 1, 3, 2]
    assert ids.id_for("ft:a") == 1, "an adapter unloaded and loaded again keeps its id"


def test_sampling_settings_become_vllm_sampling_params() -> None:
    settings = SamplingSettings(max_tokens=50, temperature=0.0, top_p=0.9, stop=("\n\n",), seed=7, n=3)
    assert sampling_params_kwargs(settings) == {
        "n": 3,
        "temperature": 0.0,
        "top_p": 0.9,
        "max_tokens": 50,
        "stop": ["\n\n"],
        "seed": 7,
        "ignore_eos": False,
        "skip_special_tokens": True,
        "include_stop_str_in_output": False,
    }
    assert sampling_params_kwargs(SamplingSettings(max_tokens=1), ignore_eos=True)["stop"] is None


@pytest.mark.parametrize(
    ("reason", "expected"), [(None, None), ("stop", "stop"), ("length", "length"), ("repetition", "stop")]
)
def test_finish_reasons_map_to_the_contract(reason: str | None, expected: str | None) -> None:
    assert finish_reason_from_vllm(reason) == expected


def test_an_engine_side_abort_or_error_fails_the_request() -> None:
    with pytest.raises(Unavailable):
        finish_reason_from_vllm("abort")
    with pytest.raises(TailorError):
        finish_reason_from_vllm("error")


def test_on_cpu_one_lora_slot_stays_free_of_resident_adapters() -> None:
    # vLLM's torch-native LoRA ops give base rows the adapter in the last slot (see lora_slots_for).
    assert lora_slots_for(4, on_cpu=True) == 5
    assert lora_slots_for(4, on_cpu=False) == 4


def test_the_cpu_backend_binds_the_cores_this_process_may_use_and_reserves_none() -> None:
    assert cpu_backend_environment(kvcache_gib=2, threads=0, allowed_cpus={3, 1}) == {
        "VLLM_CPU_KVCACHE_SPACE": "2",
        "VLLM_CPU_OMP_THREADS_BIND": "1,3",
        "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
    }
    one_core = cpu_backend_environment(kvcache_gib=1, threads=1, allowed_cpus={0, 1})
    assert one_core["VLLM_CPU_OMP_THREADS_BIND"] == "0"
