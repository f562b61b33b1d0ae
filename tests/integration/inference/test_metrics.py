"""Metrics a LoRA-aware router and an operator read from a replica, on each engine.

The hf engine exports vLLM's scheduler series itself (into the replica's registry here);
the vLLM engine's own Prometheus logger exports them into the process's registry.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

from tailor.inference.v1 import inference_service_pb2 as pb
from tests.integration.inference.conftest import (
    ALPHA_REPLY,
    ORG,
    AdmissionGate,
    Replica,
    chat_request,
    complete,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")


def engine_registry(replica: Replica) -> CollectorRegistry:
    """Where the replica's engine exports the vllm: series."""
    return replica.metrics if replica.runtime.engine.kind == "hf" else REGISTRY


def lora_info(replica: Replica) -> dict[str, str]:
    """The labels of the single vllm:lora_requests_info series, and its value as 'value'."""
    (family,) = [f for f in engine_registry(replica).collect() if f.name == "vllm:lora_requests_info"]
    # vLLM keeps one series per label set it has seen; the newest is the current one.
    sample = max(family.samples, key=lambda s: s.value)
    return {**sample.labels, "value": str(sample.value)}


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_lora_requests_info_lists_waiting_and_running_adapters(
    replica: Replica, trained_adapters: dict[str, Path]
) -> None:
    alpha = await replica.upload("ft:tailor-tiny:org-a::alpha", trained_adapters[ALPHA_REPLY])
    engine = replica.runtime.engine
    if engine.kind == "vllm":
        await _vllm_lora_requests_info(replica, alpha)
        return
    assert lora_info(replica)["running_lora_adapters"] == "" and lora_info(replica)["max_lora"] == "4"

    gate = AdmissionGate(engine)
    await gate.shut()
    call = asyncio.create_task(complete(replica.stub, chat_request("hi", adapter=alpha)))
    await replica.wait_until(lambda: engine.load().waiting == 1)
    waiting = lora_info(replica)
    # Adapters are named as in the engine (vLLM's LoRARequest names): organization/model.
    assert (
        waiting["waiting_lora_adapters"] == f"{ORG}/{alpha.name}" and waiting["running_lora_adapters"] == ""
    )
    assert float(waiting["value"]) > 1.7e9, "the value is the time of the observation"
    queued = generate_latest(replica.metrics).decode()
    assert 'vllm:num_requests_waiting{engine="0",model_name="tailor-tiny"} 1.0' in queued
    await gate.open_when_waiting(1)
    assert (await call).text == ALPHA_REPLY
    text = generate_latest(replica.metrics).decode()
    assert 'vllm:num_requests_running{engine="0",model_name="tailor-tiny"} 0.0' in text


async def _vllm_lora_requests_info(replica: Replica, alpha: pb.AdapterRef) -> None:
    """vLLM updates its gauges after each engine step, so a request is seen once it ran.

    (A paused vLLM scheduler takes no steps, so the waiting state cannot be held still and
    observed as on the hf engine.) max_lora is vLLM's batch slots: on CPU one more than the
    adapters Tailor keeps resident (see vllm_engine.lora_slots_for).
    """
    engine = replica.runtime.engine
    assert (await complete(replica.stub, chat_request("hi", adapter=alpha))).text == ALPHA_REPLY
    info = lora_info(replica)
    assert info["max_lora"] == str(engine.lora_slots) == "5"  # type: ignore[attr-defined]
    assert info["running_lora_adapters"] == "" and info["waiting_lora_adapters"] == ""
    assert float(info["value"]) > 1.7e9, "the value is the time of the observation"
    (family,) = [f for f in REGISTRY.collect() if f.name == "vllm:lora_requests_info"]
    running = {s.labels["running_lora_adapters"] for s in family.samples}
    assert f"{ORG}/{alpha.name}" in running, "reported running once"
    text = generate_latest(REGISTRY).decode()
    assert 'vllm:num_requests_running{engine="0",model_name="tailor-tiny"} 0.0' in text
    assert 'vllm:num_requests_waiting{engine="0",model_name="tailor-tiny"} 0.0' in text


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
