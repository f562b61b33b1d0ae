"""What the vllm engine translates, tested without vLLM (tests/integration/inference runs it)."""

from __future__ import annotations

import dataclasses

import pytest

from services.common.errors import TailorError, Unavailable
from services.inference.engine import TokenLogprob
from services.inference.sampling import SamplingSettings
from services.inference.vllm_engine import (
    LoRAIds,
    cpu_backend_environment,
    finish_reason_from_vllm,
    logprobs_from_vllm,
    lora_slots_for,
    sampling_params_kwargs,
)


@dataclasses.dataclass
class Logprob:
    """vLLM's ``vllm.logprobs.Logprob`` (the fields read), without importing vLLM."""

    logprob: float
    rank: int | None = None


def test_lora_ids_are_stable_per_name_and_never_shared() -> None:
    ids = LoRAIds()
    first = [ids.id_for(name) for name in ["ft:a", "ft:b", "ft:a", "ft:c", "ft:b"]]
    assert first == [1, 2, 1, 3, 2]
    assert ids.id_for("ft:a") == 1, "an adapter unloaded and loaded again keeps its id"


def test_sampling_settings_become_vllm_sampling_params() -> None:
    settings = SamplingSettings(
        max_tokens=50,
        temperature=0.0,
        top_p=0.9,
        stop=("\n\n",),
        seed=7,
        n=3,
        frequency_penalty=0.5,
        presence_penalty=-1.0,
        logit_bias={11: 100.0},
        top_logprobs=2,
    )
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
        "frequency_penalty": 0.5,
        "presence_penalty": -1.0,
        "logit_bias": {11: 100.0},
        "logprobs": 2,
    }
    plain = sampling_params_kwargs(SamplingSettings(max_tokens=1), ignore_eos=True)
    assert (plain["stop"], plain["logit_bias"], plain["logprobs"]) == (None, None, None)


def test_vllm_logprobs_become_the_chosen_token_and_its_best_alternatives() -> None:
    # vLLM's per-position dict: the sampled token with its rank, then ranks 1..top.
    outside_top = {7: Logprob(-3.0, rank=5), 1: Logprob(-0.5, rank=1), 2: Logprob(-1.0, rank=2)}
    inside_top = {2: Logprob(-1.0, rank=2), 1: Logprob(-0.5, rank=1)}
    assert logprobs_from_vllm([outside_top, inside_top], [7, 2], top=2) == (
        TokenLogprob(7, -3.0, ((1, -0.5), (2, -1.0))),
        TokenLogprob(2, -1.0, ((1, -0.5), (2, -1.0))),
    )
    assert logprobs_from_vllm([{7: Logprob(-3.0, rank=5)}], [7], top=0) == (TokenLogprob(7, -3.0, ()),)


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
