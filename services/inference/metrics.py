"""The inference service's Prometheus metrics.

Tailor's own series (``tailor_inference_*``) are recorded the same way whichever engine
runs. Series a LoRA-aware router reads by vLLM's names (``vllm:num_requests_running``,
``vllm:num_requests_waiting`` and ``vllm:lora_requests_info``) come from vLLM itself when
the vllm engine runs; with the hf engine, :class:`VLLMCompatibleCollector` exports the
same names and shapes, so a GIE / llm-d endpoint picker works unchanged on either.

``vllm:lora_requests_info`` is vLLM's odd but established shape: one gauge whose labels
carry the state, ``running_lora_adapters`` and ``waiting_lora_adapters`` (comma-separated
adapter names) and ``max_lora``, and whose value is the Unix time the state was observed;
routers take the series with the largest value. This collector computes it on each scrape,
so there is only ever the one current series.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from services.inference.engine import EngineLoad

# Buckets as vLLM's for the same quantities, so dashboards for either compare.
_TTFT_BUCKETS = (
    0.001,
    0.005,
    0.01,
    0.02,
    0.04,
    0.06,
    0.08,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
    40.0,
)
_ITL_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)

REQUESTS = Counter(
    "tailor_inference_requests_total",
    "Generation requests finished, by outcome: completed, cancelled (client gone or deadline) or failed.",
    ["outcome"],
)
PROMPT_TOKENS = Counter("tailor_inference_prompt_tokens_total", "Prompt tokens of generation requests.")
GENERATION_TOKENS = Counter("tailor_inference_generation_tokens_total", "Tokens generated, over all choices.")
TIME_TO_FIRST_TOKEN = Histogram(
    "tailor_inference_time_to_first_token_seconds",
    "From a request's arrival (rendering, adapter loading and queueing included) to its first token.",
    buckets=_TTFT_BUCKETS,
)
INTER_TOKEN_LATENCY = Histogram(
    "tailor_inference_inter_token_latency_seconds",
    "Time between successive tokens of a request, per token.",
    buckets=_ITL_BUCKETS,
)
ADAPTER_REQUESTS = Counter(
    "tailor_inference_adapter_requests_total",
    "Requests naming an adapter: hit when it was already in the engine, miss when it had to be loaded.",
    ["result"],
)
ADAPTER_DOWNLOADS = Counter(
    "tailor_inference_adapter_downloads_total",
    "Adapters downloaded from the object store into the local cache.",
)
ADAPTER_LOADS = Counter(
    "tailor_inference_adapter_loads_total",
    "Adapter loads into the engine, by result: loaded, not_found, invalid or error.",
    ["result"],
)
ADAPTER_LOAD_SECONDS = Histogram(
    "tailor_inference_adapter_load_seconds",
    "Time to bring an adapter into the engine (download and checks included when not cached on disk).",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
ADAPTER_EVICTIONS = Counter(
    "tailor_inference_adapter_evictions_total",
    "Adapters evicted by the LRU: from the engine, or from the local disk cache.",
    ["tier"],
)


@dataclass(frozen=True)
class LoadSnapshot:
    """Requests running and waiting now, in all and by adapter name."""

    running: int
    waiting: int
    running_adapters: tuple[str, ...]
    waiting_adapters: tuple[str, ...]


class VLLMCompatibleCollector(Collector):
    """Exports vLLM's scheduler and LoRA gauges from snapshots taken at scrape time (hf engine).

    ``engine_load`` gives the scheduler gauges, ``snapshot`` the adapters with running and
    waiting requests.
    """

    def __init__(
        self,
        snapshot: Callable[[], LoadSnapshot],
        engine_load: Callable[[], EngineLoad],
        *,
        model_name: str,
        max_lora: int,
    ) -> None:
        self._snapshot = snapshot
        self._engine_load = engine_load
        self._model_name = model_name
        self._max_lora = max_lora

    def collect(self) -> Iterator[GaugeMetricFamily]:
        state = self._snapshot()
        load = self._engine_load()
        # vLLM labels these per engine core; this process has one.
        labels = ["model_name", "engine"]
        running = GaugeMetricFamily(
            "vllm:num_requests_running", "Number of requests in model execution batches.", labels=labels
        )
        running.add_metric([self._model_name, "0"], load.running)
        waiting = GaugeMetricFamily(
            "vllm:num_requests_waiting", "Number of requests waiting to be processed.", labels=labels
        )
        waiting.add_metric([self._model_name, "0"], load.waiting)
        lora_info = GaugeMetricFamily(
            "vllm:lora_requests_info",
            "Running stats on lora requests.",
            labels=["max_lora", "waiting_lora_adapters", "running_lora_adapters"],
        )
        lora_info.add_metric(
            [str(self._max_lora), ",".join(state.waiting_adapters), ",".join(state.running_adapters)],
            time.time(),
        )
        yield from (running, waiting, lora_info)
