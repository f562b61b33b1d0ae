"""Multi-LoRA scaling curves: throughput and inter-token latency against the number of distinct adapters.

How users judge a multi-LoRA server: as the traffic spreads over more fine-tunes, how
much throughput and tail latency does it keep, and what happens once the adapters no
longer fit the engine. The sibling :mod:`bench.inference_multilora` compares arms with
every adapter pre-loaded; here the set outgrows the adapter LRU and requests pay for it.

- **inputs**: tailor-tiny (``--model small``: a ~30M random-init Llama with its tokenizer),
  ``max(--adapters)`` random LoRA adapters with non-zero A and B (as S-LoRA's), at Tailor's
  training defaults for the model's family (Llama: rank 16 on all seven projections),
  in a filesystem object store; one seeded request list (prompts 16-64 tokens, outputs
  16-48, greedy, to length, as the sibling's);
- **replica**: one per engine available here (hf always; vLLM where it is installed and
  runs), started once, the engine holding at most ``--lru`` adapters
  (``TAILOR_INFERENCE_MAX_LORAS``), fewer than the largest set; batch size =
  ``--concurrency``; Tailor's other defaults (``max_lora_rank`` 64, a local disk cache of
  256 adapters);
- **path**: each request takes its adapter through the replica's adapter cache as a
  served request does (``AdapterCache.use``: on a miss the least recently used adapter no
  request holds is evicted and the adapter loaded into the engine), then streams from the
  engine; in process, no gRPC. Before measuring, every adapter is downloaded once, so a
  miss is a load from the local disk, not the object store;
- **arms**: N = 0, the base model with no adapter, is the baseline; then each N of
  ``--adapters``, each request's adapter drawn uniformly at random (seeded) from the N.
  A run of an arm whose N fits the LRU starts with its adapters loaded (it measures the
  steady state, not the switch from the arm before);
- **load**: closed loop, ``--concurrency`` clients each sending its next request when the
  previous one ends; ``--repeat`` runs per arm, round-robin over the arms, the median
  run (by throughput) reported;
- **measured**: output tokens/s over the run's wall time, ITL (gaps between a stream's
  successive tokens) p50 / p99, TTFT p50 / p99 (waiting for an adapter load included),
  engine loads per request and their mean time (the service's own Prometheus series);
  throughput and ITL p99 as ratios to N = 0 of the same engine and run.

    python bench/inference_multilora_scaling.py [--engines hf,vllm] [--adapters 1,8,64,256]
        [--lru 32] [--requests 128] [--concurrency 16] [--repeat 3] [--threads 1]
        [--model tailor-tiny] [--no-write] [--plot PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import random
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")  # its per-step info lines would bury the figures

import structlog  # noqa: E402
import torch  # noqa: E402
from prometheus_client import REGISTRY  # noqa: E402

from bench.inference_multilora import (  # noqa: E402
    ORGANIZATION,
    ArmResult,
    Generate,
    NoRegistry,
    RequestSpec,
    closed_loop,
    make_workload,
    prepare_model,
    vllm_version,
)
from bench.plot_multilora_scaling import ScalingPoint, plot_scaling, scaling_table  # noqa: E402
from bench.report import write_section  # noqa: E402
from services.common.base_models import BaseModelSpec, resolve_base_model  # noqa: E402
from services.inference.adapters import AdapterRef  # noqa: E402
from services.inference.config import InferenceSettings  # noqa: E402
from services.inference.engine import ChoiceDelta, GenerationRequest  # noqa: E402
from services.inference.server import InferenceRuntime, build_runtime  # noqa: E402
from tests.integration.inference.adapter_factory import random_adapter  # noqa: E402

SECTION = "inference_multilora_scaling"
PLOT = REPO / "docs" / "images" / "multilora_scaling.png"
BASE_MODEL = "bench"


@dataclass(frozen=True)
class Adapters:
    """The random adapters of a run: directories on disk, and what the model registry would say of them."""

    directories: list[Path]
    rank: int
    target_modules: tuple[str, ...]

    def ref(self, index: int) -> AdapterRef:
        return AdapterRef(
            f"ft:{BASE_MODEL}:{ORGANIZATION}::a{index:03d}",
            f"orgs/{ORGANIZATION}/adapters/a{index:03d}",
            base_model=BASE_MODEL,
            lora_rank=self.rank,
            target_modules=self.target_modules,
        )


def replica_settings(
    model_dir: Path, data_dir: Path, args: argparse.Namespace, engine: str
) -> InferenceSettings:
    return InferenceSettings(
        data_dir=data_dir,
        base_models={BASE_MODEL: BaseModelSpec(source=str(model_dir))},
        inference_base_model=BASE_MODEL,
        inference_engine=engine,
        inference_dtype="float32",
        inference_max_batch_size=args.concurrency,
        inference_max_loras=args.lru,
        inference_max_cpu_loras=args.lru,
        inference_vllm_cpu_threads=args.threads,
    )


def make_adapters(model_dir: Path, count: int, root: Path, args: argparse.Namespace) -> Adapters:
    """``count`` random adapters of the rank and on the modules Tailor's trainer gives this model."""
    from transformers import AutoModelForCausalLM

    resolved = resolve_base_model(BASE_MODEL, replica_settings(model_dir, root / "resolve", args, "hf"))
    modules = resolved.lora_target_modules
    targets = None if isinstance(modules, str) else list(modules)  # "all-linear": the factory's own
    base = AutoModelForCausalLM.from_pretrained(model_dir)
    directories = [
        random_adapter(base, root / f"a{i:03d}", rank=resolved.lora_rank, seed=i, target_modules=targets)
        for i in range(count)
    ]
    return Adapters(directories, resolved.lora_rank, tuple(targets or ()))


def through_the_cache(runtime: InferenceRuntime, adapters: Adapters) -> Generate:
    """``generate`` for requests naming an adapter by its index ("a007"), served as the service serves them.

    The adapter is held through the replica's cache for the whole stream (a miss loads it,
    evicting as the LRU says), and the engine sees the id the cache gives it.
    """

    async def generate(request: GenerationRequest) -> AsyncIterator[list[ChoiceDelta]]:
        if request.adapter is None:
            async for deltas in runtime.engine.generate(request):
                yield deltas
            return
        ref = adapters.ref(int(request.adapter.removeprefix("a")))
        async with runtime.adapters.use(ref, ORGANIZATION) as engine_id:
            async for deltas in runtime.engine.generate(dataclasses.replace(request, adapter=engine_id)):
                yield deltas

    return generate


def adapter_draws(n: int, count: int, seed: int) -> list[str | None]:
    """The adapter of each of ``count`` requests, uniform over ``n`` of them (none for n = 0)."""
    if n == 0:
        return [None] * count
    rng = random.Random(seed)
    return [f"a{rng.randrange(n):03d}" for _ in range(count)]


def adapter_load_counters() -> tuple[float, float]:
    """Adapter loads into the engine so far in this process and the seconds they took (service metrics)."""
    loads = REGISTRY.get_sample_value("tailor_inference_adapter_loads_total", {"result": "loaded"}) or 0.0
    seconds = REGISTRY.get_sample_value("tailor_inference_adapter_load_seconds_sum") or 0.0
    return loads, seconds


async def bench_engine(
    kind: str, model_dir: Path, adapters: Adapters, args: argparse.Namespace, root: Path
) -> list[ScalingPoint]:
    """Every arm of one engine, ``args.repeat`` runs each round-robin; the median run of each."""
    settings = replica_settings(model_dir, root / kind, args, kind)
    runtime = build_runtime(settings, metrics_registry=None, registry=NoRegistry())  # type: ignore[arg-type]
    started = time.perf_counter()
    try:
        capacity = runtime.engine.adapter_capacity
        print(f"{runtime.engine.kind} engine, holding at most {capacity} adapters", flush=True)
        for i, directory in enumerate(adapters.directories):
            for file in ("adapter_config.json", "adapter_model.safetensors"):
                await runtime.store.put_file(f"{adapters.ref(i).uri}/{file}", directory / file)
        workload = make_workload(args.requests, vocabulary=runtime.engine.vocab_size)
        generate = through_the_cache(runtime, adapters)
        # Warm-up, not measured: the engine's first steps, and every adapter downloaded once.
        await closed_loop(generate, workload[: args.concurrency], [None], args.concurrency)
        for i in range(len(adapters.directories)):
            await runtime.adapters.load(adapters.ref(i), ORGANIZATION)
        runs: dict[int, list[ScalingPoint]] = {n: [] for n in [0, *args.adapters]}
        for repeat in range(args.repeat):
            for n, points in runs.items():
                if 0 < n <= args.lru:  # a set that fits starts loaded: the steady state, not the switch
                    for i in range(n):
                        await runtime.adapters.load(adapters.ref(i), ORGANIZATION)
                points.append(await measure(runtime.engine.kind, n, generate, workload, args, seed=repeat))
        print(f"  {runtime.engine.kind}: {time.perf_counter() - started:.0f} s", flush=True)
        return [sorted(points, key=lambda p: p.tokens_per_s)[len(points) // 2] for points in runs.values()]
    finally:
        await runtime.close()


async def measure(
    engine: str,
    n: int,
    generate: Generate,
    workload: list[RequestSpec],
    args: argparse.Namespace,
    *,
    seed: int,
) -> ScalingPoint:
    loads_before, seconds_before = adapter_load_counters()
    draws = adapter_draws(n, len(workload), seed)
    traces, wall = await closed_loop(generate, workload, draws, args.concurrency)
    loads_after, seconds_after = adapter_load_counters()
    result, loads = ArmResult(f"N = {n}", traces, wall), loads_after - loads_before
    point = ScalingPoint(
        engine,
        n,
        result.tokens_per_s,
        result.itl(50) * 1e3,
        result.itl(99) * 1e3,
        result.ttft(50) * 1e3,
        result.ttft(99) * 1e3,
        loads / len(traces),
        (seconds_after - seconds_before) / loads * 1e3 if loads else float("nan"),
    )
    print(
        f"  {engine} N = {n:<4} {point.tokens_per_s:8.1f} tok/s  ITL p50 {point.itl_p50_ms:6.1f} ms  "
        f"p99 {point.itl_p99_ms:7.1f} ms  TTFT p50 {point.ttft_p50_ms:7.1f} ms  "
        f"loads/request {point.loads_per_request:.2f}",
        flush=True,
    )
    return point


def parse_counts(text: str) -> list[int]:
    try:
        counts = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"comma-separated whole numbers, not {text!r}") from None
    if not counts or counts[0] < 1:
        raise argparse.ArgumentTypeError("at least one count, each 1 or more (0, the baseline, always runs)")
    return counts


def parse_engines(text: str) -> list[str]:
    engines = list(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    if not engines or not set(engines) <= {"hf", "vllm"}:
        raise argparse.ArgumentTypeError(f"a comma list of hf and vllm, not {text!r}")
    return engines


def usable_engines(engines: list[str]) -> tuple[list[str], list[str]]:
    """The engines that can run here, and a line for each that cannot."""
    from services.inference.engine import vllm_usable

    if "vllm" in engines and not vllm_usable():
        return [e for e in engines if e != "vllm"], [
            "vllm: not installed or not runnable here (a CUDA build on a GPU, vllm-cpu on CPUs)"
        ]
    return engines, []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", type=parse_engines, default=["hf", "vllm"], help="comma list: hf, vllm")
    parser.add_argument("--adapters", type=parse_counts, default=[1, 8, 64, 256], help="distinct adapters")
    parser.add_argument("--lru", type=int, default=32, help="adapters an engine holds at once (max_loras)")
    parser.add_argument("--requests", type=int, default=128, help="requests per run of an arm")
    parser.add_argument("--concurrency", type=int, default=16, help="closed-loop clients (= batch size)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per arm, round-robin; median reported")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per engine (torch; vLLM's cores)")
    parser.add_argument("--model", choices=["tailor-tiny", "small"], default="tailor-tiny")
    parser.add_argument("--no-write", action="store_true", help="leave docs/benchmarks.md and its PNG alone")
    parser.add_argument(
        "--plot", type=Path, help=f"where the PNG goes (default: {PLOT.relative_to(REPO)}, unless --no-write)"
    )
    args = parser.parse_args()
    if min(args.lru, args.requests, args.concurrency, args.repeat, args.threads) < 1:
        parser.error("--lru, --requests, --concurrency, --repeat and --threads must be 1 or more")

    engines, skipped = usable_engines(args.engines)
    for line in skipped:
        print(f"skipped {line}", flush=True)
    if not engines:
        return 2
    torch.set_num_threads(args.threads)
    # Each adapter load logs a line at info: thousands of them would bury the figures.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    load_before, started = os.getloadavg(), time.perf_counter()
    with tempfile.TemporaryDirectory() as temp:
        root = Path(temp)
        model_dir = prepare_model(args.model, root)
        adapters = make_adapters(model_dir, max(args.adapters), root / "adapters", args)
        points = [
            point
            for kind in engines
            for point in asyncio.run(bench_engine(kind, model_dir, adapters, args, root))
        ]
    load_after, minutes = os.getloadavg(), (time.perf_counter() - started) / 60
    text = scaling_table(points)
    print(f"{text}\n{minutes:.1f} min in all")
    plot_path = args.plot or (None if args.no_write else PLOT)
    if plot_path is not None:
        title = (
            f"{args.model}, rank {adapters.rank} adapters, {args.concurrency} concurrent streams, "
            f"adapter LRU {args.lru}, {time.strftime('%Y-%m-%d')}"
        )
        print(f"plot: {plot_scaling(points, lru=args.lru, title=title, path=plot_path)}")
    if not args.no_write:
        figure = f"![throughput and ITL p99 against distinct adapters, per engine](images/{PLOT.name})"
        write_section(
            SECTION,
            "Multi-LoRA scaling: throughput and ITL p99 against distinct adapters",
            description(args, adapters, engines, skipped, (load_before[0], load_after[0]), minutes),
            f"{text}\n\n{figure}",
            command(args),
        )
    return 0


def command(args: argparse.Namespace) -> str:
    return (
        f"python bench/inference_multilora_scaling.py --engines {','.join(args.engines)} "
        f"--adapters {','.join(map(str, args.adapters))} --lru {args.lru} --requests {args.requests} "
        f"--concurrency {args.concurrency} --repeat {args.repeat} --threads {args.threads} "
        f"--model {args.model}"
    )


def description(
    args: argparse.Namespace,
    adapters: Adapters,
    engines: list[str],
    skipped: list[str],
    load: tuple[float, float],
    minutes: float,
) -> str:
    """The section's prose: what ran, under which conditions, against which baseline."""
    modules = ", ".join(adapters.target_modules) or "all linear layers"
    beyond = [n for n in args.adapters if n > args.lru]
    text = (
        f"{args.model} with random LoRA adapters as Tailor trains them for its family (rank {adapters.rank} "
        f"on {modules}; non-zero A and B). Each engine holds at most {args.lru} adapters (the adapter LRU, "
        f"`TAILOR_INFERENCE_MAX_LORAS={args.lru}`"
        + (
            f"; more than the {args.concurrency} streams in flight, so a load never waits for a request to "
            "free a slot)"
            if args.lru > args.concurrency
            else ")"
        )
        + (f", so from {beyond[0]} distinct adapters on, requests evict and load" if beyond else "")
        + ": every request takes its adapter through the replica's adapter cache as a served request "
        "does, then streams from the engine, in process, no gRPC (each adapter was downloaded once before "
        f"measuring, so a load comes from the local disk). Closed loop of {args.concurrency} clients (batch "
        f"size {args.concurrency}), {args.requests} requests per run (prompts 16-64 tokens, outputs 16-48, "
        "greedy, to length), each request's adapter drawn uniformly from the N. The baseline, in the same "
        "run on the same engine, is N = 0: the base model with no adapter under the same load. Median of "
        f"{args.repeat} round-robin runs per arm; {args.threads} CPU thread(s) per engine. TTFT includes "
        "waiting for a batch slot and for the adapter's load. Load average (1 min) "
        f"{load[0]:.1f} before, {load[1]:.1f} after; {minutes:.1f} min in all."
    )
    if "vllm" in engines:
        where = "a GPU" if torch.cuda.is_available() else f"CPU, float32, bound to {args.threads} core(s)"
        text += f" vLLM is {vllm_version()} on {where}."
    return text + "".join(f" Not measured: {line}." for line in skipped)


if __name__ == "__main__":
    sys.exit(main())
