"""Gradient checkpointing and the micro-batch size, chosen from the model's size and the device's memory."""

from __future__ import annotations

from services.trainer.worker.memory import GiB, ModelSize, choose_memory_plan

TAILOR_TINY = ModelSize(parameters=1_200_000, hidden_size=128, num_layers=4)
QWEN_1_5B = ModelSize(parameters=1_540_000_000, hidden_size=1536, num_layers=28, bytes_per_weight=2)
QWEN_7B = ModelSize(parameters=7_620_000_000, hidden_size=3584, num_layers=28, bytes_per_weight=2)


def test_a_small_model_on_the_cpu_keeps_todays_settings() -> None:
    plan = choose_memory_plan(TAILOR_TINY, max_length=512, device_type="cpu")
    assert (plan.gradient_checkpointing, plan.micro_batch_tokens) == (False, 16384)
    assert plan.describe(512) == (
        "Memory: gradient checkpointing off, micro-batches of up to 16384 tokens (32 sequences of 512), "
        "for 1.2M parameters on cpu"
    )


def test_a_billion_parameters_on_the_cpu_checkpoint_in_smaller_micro_batches() -> None:
    size = ModelSize(parameters=1_540_000_000, hidden_size=1536, num_layers=28)
    plan = choose_memory_plan(size, max_length=2048, device_type="cpu")
    assert (plan.gradient_checkpointing, plan.micro_batch_tokens) == (True, 4096)
    assert "gradient checkpointing on" in plan.describe(2048) and "1.5B parameters" in plan.describe(2048)


def test_on_a_large_gpu_a_small_model_needs_no_checkpointing() -> None:
    plan = choose_memory_plan(QWEN_1_5B, max_length=2048, device_type="cuda", device_memory=80 * GiB)
    assert not plan.gradient_checkpointing
    assert plan.micro_batch_tokens == 32768  # ~59 GiB of activations at ~1.5 MB a token
    assert "on cuda with 80 GiB" in plan.describe(2048)


def test_when_a_row_does_not_fit_without_it_checkpointing_is_on() -> None:
    plan = choose_memory_plan(QWEN_7B, max_length=4096, device_type="cuda", device_memory=24 * GiB)
    assert plan.gradient_checkpointing
    assert 256 <= plan.micro_batch_tokens <= 8192
    more_memory = choose_memory_plan(QWEN_7B, max_length=4096, device_type="cuda", device_memory=80 * GiB)
    assert not more_memory.gradient_checkpointing


def test_weights_that_fill_the_gpu_leave_the_smallest_micro_batch() -> None:
    plan = choose_memory_plan(QWEN_7B, max_length=2048, device_type="cuda", device_memory=16 * GiB)
    assert (plan.gradient_checkpointing, plan.micro_batch_tokens) == (True, 256)


def test_the_worker_settings_override_the_rule_and_say_so() -> None:
    plan = choose_memory_plan(
        TAILOR_TINY, max_length=512, device_type="cpu", gradient_checkpointing=True, micro_batch_tokens=1024
    )
    assert (plan.gradient_checkpointing, plan.micro_batch_tokens) == (True, 1024)
    assert plan.describe(512).endswith(
        "set by TAILOR_WORKER_GRADIENT_CHECKPOINTING, TAILOR_WORKER_MICRO_BATCH_TOKENS"
    )
    forced_off = choose_memory_plan(QWEN_7B, max_length=4096, device_type="cuda", device_memory=24 * GiB,
                                    gradient_checkpointing=False)  # fmt: skip
    assert not forced_off.gradient_checkpointing
    assert forced_off.micro_batch_tokens == 512  # what fits without it: ~3 GiB at ~3.4 MB a token
