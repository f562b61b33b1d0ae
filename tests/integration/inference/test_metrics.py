"""Metrics a LoRA-aware router and an operator read from a replica on the hf engine."""

from __future__ import annotations

import asyncio
from pathlib import Path

from prometheus_client import REGISTRY, generate_latest

from tests.integration.inference.conftest import ALPHA_REPLY, Replica, chat_request, complete


def lora_info(replica: Replica) -> dict[str, str]:
    """The labels of the single vllm:lora_requests_info series, and its value as 'value'."""
    (family,) = [f for f in replica.metrics.collect() if f.name == "vllm:lora_requests_info"]
    (sample,) = family.samples
    return {**sample.labels, "value": str(sample.value)}


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_lora_requests_info_lists_waiting_and_running_adapters(
    replica: Replica, trained_adapters: dict[str, Path]
) -> None:
    alpha = await replica.upload("ft:tailor-tiny:org-a::alpha", trained_adapters[ALPHA_REPLY])
    assert lora_info(replica)["running_lora_adapters"] == "" and lora_info(replica)["max_lora"] == "4"

    engine = replica.runtime.engine
    engine.pause_admissions()  # type: ignore[attr-defined]
    call = asyncio.create_task(complete(replica.stub, chat_request("hi", adapter=alpha)))
    await replica.wait_until(lambda: engine.load().waiting == 1)
    waiting = lora_info(replica)
    assert waiting["waiting_lora_adapters"] == alpha.name and waiting["running_lora_adapters"] == ""
    assert float(waiting["value"]) > 1.7e9, "the value is the time of the observation"
    queued = generate_latest(replica.metrics).decode()
    assert 'vllm:num_requests_waiting{engine="0",model_name="tailor-tiny"} 1.0' in queued
    engine.resume_admissions()  # type: ignore[attr-defined]
    assert (await call).text == ALPHA_REPLY
    text = generate_latest(replica.metrics).decode()
    assert 'vllm:num_requests_running{engine="0",model_name="tailor-tiny"} 0.0' in text


async def test_requests_tokens_and_latencies_are_counted(
    replica: Replica, trained_adapters: dict[str, Path]
) -> None:
    alpha = await replica.upload("ft:tailor-tiny:org-a::alpha", trained_adapters[ALPHA_REPLY])
    before = {
        "completed": sample("tailor_inference_requests_total", outcome="completed"),
        "tokens": sample("tailor_inference_generation_tokens_total"),
        "ttft": sample("tailor_inference_time_to_first_token_seconds_count"),
        "itl": sample("tailor_inference_inter_token_latency_seconds_count"),
        "misses": sample("tailor_inference_adapter_requests_total", result="miss"),
        "hits": sample("tailor_inference_adapter_requests_total", result="hit"),
        "loads": sample("tailor_inference_adapter_loads_total", result="loaded"),
    }
    first = await complete(replica.stub, chat_request("hi", adapter=alpha))
    await complete(replica.stub, chat_request("hello", adapter=alpha))
    tokens = first.usage.completion_tokens
    assert sample("tailor_inference_requests_total", outcome="completed") - before["completed"] == 2
    assert sample("tailor_inference_generation_tokens_total") - before["tokens"] == 2 * tokens
    assert sample("tailor_inference_time_to_first_token_seconds_count") - before["ttft"] == 2
    assert sample("tailor_inference_inter_token_latency_seconds_count") - before["itl"] == 2 * (tokens - 1)
    assert sample("tailor_inference_adapter_requests_total", result="miss") - before["misses"] == 1
    assert sample("tailor_inference_adapter_requests_total", result="hit") - before["hits"] == 1
    assert sample("tailor_inference_adapter_loads_total", result="loaded") - before["loads"] == 1
