"""What the multi-LoRA scaling run shows: its figures as a markdown table and as a PNG.

Kept apart from the measuring (:mod:`bench.inference_multilora_scaling`): both take plain
:class:`ScalingPoint` values, so they can be drawn again, or checked, without a run.

The PNG has two panels side by side, throughput and ITL p99 against the number of
distinct adapters, one line per engine; each engine's no-adapter baseline of the same run
is a dashed horizontal line in its colour and the adapter LRU's size a dotted vertical
line, so the eye finds where the set stops fitting the engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ScalingPoint:
    """One engine's figures at one number of distinct adapters (0: the base model alone, the baseline)."""

    engine: str
    adapters: int
    tokens_per_s: float
    itl_p50_ms: float
    itl_p99_ms: float
    ttft_p50_ms: float
    ttft_p99_ms: float
    # Adapter loads into the engine per request, and their mean duration (nan without loads).
    loads_per_request: float
    mean_load_ms: float


def scaling_table(points: list[ScalingPoint]) -> str:
    """One row per engine and adapter count, throughput and ITL p99 also as ratios to the engine's N = 0."""
    baselines = {p.engine: p for p in points if p.adapters == 0}
    missing = sorted({p.engine for p in points} - set(baselines))
    if missing:
        raise ValueError(f"no baseline (adapters = 0) for engine(s) {', '.join(missing)}")
    lines = [
        "| engine | distinct adapters | output tok/s | vs no adapter | ITL p50 / p99 ms | "
        "ITL p99 vs no adapter | TTFT p50 / p99 ms | engine loads per request | mean load ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for p in points:
        base = baselines[p.engine]
        label = "0 (base model: the baseline)" if p.adapters == 0 else str(p.adapters)
        load_ms = "-" if p.loads_per_request == 0 else f"{p.mean_load_ms:.0f}"
        lines.append(
            f"| {p.engine} | {label} | {p.tokens_per_s:.0f} | {p.tokens_per_s / base.tokens_per_s:.2f}x | "
            f"{p.itl_p50_ms:.1f} / {p.itl_p99_ms:.1f} | {p.itl_p99_ms / base.itl_p99_ms:.2f}x | "
            f"{p.ttft_p50_ms:.0f} / {p.ttft_p99_ms:.0f} | {p.loads_per_request:.2f} | {load_ms} |"
        )
    return "\n".join(lines)


def plot_scaling(points: list[ScalingPoint], *, lru: int, title: str, path: Path) -> Path:
    """Draw the curves of ``points`` into ``path`` (PNG); returns ``path``."""
    import matplotlib

    matplotlib.use("Agg")  # no display: the benchmark runs headless
    import matplotlib.pyplot as plt

    engines = list(dict.fromkeys(point.engine for point in points))
    counts = sorted({point.adapters for point in points if point.adapters > 0})
    figure, (throughput, latency) = plt.subplots(1, 2, figsize=(11, 4.2))
    panels = (
        (throughput, "output tokens/s (higher is better)", lambda p: p.tokens_per_s),
        (latency, "inter-token latency p99, ms (lower is better)", lambda p: p.itl_p99_ms),
    )
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for axes, label, value in panels:
        for engine, colour in zip(engines, colours, strict=False):
            mine = [p for p in points if p.engine == engine]
            curve = sorted((p for p in mine if p.adapters > 0), key=lambda p: p.adapters)
            xs, ys = [p.adapters for p in curve], [value(p) for p in curve]
            axes.plot(xs, ys, "o-", color=colour, label=engine)
            for base in (p for p in mine if p.adapters == 0):
                axes.axhline(
                    value(base), color=colour, linestyle="--", linewidth=1, label=f"{engine}, no adapter"
                )
        axes.axvline(lru, color="grey", linestyle=":", linewidth=1, label=f"adapter LRU = {lru}")
        axes.set_xscale("log", base=2)
        axes.set_xticks(counts, [str(n) for n in counts])
        axes.set_xlabel("distinct adapters in the traffic")
        axes.set_ylabel(label)
        axes.set_ylim(bottom=0)
        axes.grid(True, alpha=0.3)
    throughput.legend(fontsize=8, loc="best")
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
