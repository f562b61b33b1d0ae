"""Waiting and running requests per adapter, and the vLLM-shaped gauges built from them."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, generate_latest

from services.inference.engine import EngineLoad
from services.inference.metrics import VLLMCompatibleCollector
from services.inference.request_tracker import RequestTracker


def test_requests_wait_until_their_first_token_then_run() -> None:
    tracker = RequestTracker()
    with (
        tracker.track("ft:a") as first,
        tracker.track("ft:a"),
        tracker.track("ft:b") as third,
        tracker.track(None),
    ):
        first.started()
        third.started()
        third.started()  # idempotent
        assert tracker.counts("ft:a") == (1, 1)
        snapshot = tracker.snapshot()
        assert (snapshot.running, snapshot.waiting) == (2, 2)
        assert snapshot.running_adapters == ("ft:a", "ft:b") and snapshot.waiting_adapters == ("ft:a",)
    assert tracker.snapshot().running == tracker.snapshot().waiting == 0
    assert tracker.snapshot().running_adapters == ()


def test_the_collector_exports_vllms_names_and_shapes() -> None:
    tracker = RequestTracker()
    registry = CollectorRegistry()
    # the scheduler gauges are the engine's batch and queue, the adapter lists the tracker's
    engine_load = EngineLoad(running=1, waiting=2)
    registry.register(
        VLLMCompatibleCollector(tracker.snapshot, lambda: engine_load, model_name="tailor-tiny", max_lora=8)
    )
    with tracker.track("ft:a") as running, tracker.track("ft:b"), tracker.track("ft:c"), tracker.track(None):
        running.started()
        before = time.time()
        text = generate_latest(registry).decode()
    assert 'vllm:num_requests_running{engine="0",model_name="tailor-tiny"} 1.0' in text
    assert 'vllm:num_requests_waiting{engine="0",model_name="tailor-tiny"} 2.0' in text
    (line,) = [line for line in text.splitlines() if line.startswith("vllm:lora_requests_info{")]
    assert 'max_lora="8"' in line
    assert 'running_lora_adapters="ft:a"' in line and 'waiting_lora_adapters="ft:b,ft:c"' in line
    assert float(line.rsplit(" ", 1)[1]) >= before - 1, "the value is the time of the observation"
