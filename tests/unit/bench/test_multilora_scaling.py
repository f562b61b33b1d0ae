"""The multi-LoRA scaling benchmark's table, plot and request mix, on figures given by hand."""

from __future__ import annotations

import argparse
import math
import random
from collections import Counter
from pathlib import Path

import pytest

from bench.plot_multilora_scaling import ScalingPoint, plot_scaling, scaling_table


def point(
    engine: str, adapters: int, tokens_per_s: float, itl_p99_ms: float, loads: float = 0.0
) -> ScalingPoint:
    return ScalingPoint(
        engine, adapters, tokens_per_s, 5.0, itl_p99_ms, 40.0, 90.0, loads, 20.0 if loads else math.nan
    )


POINTS = [
    point("vllm", 0, 1000, 10),
    point("vllm", 8, 800, 15),
    point("vllm", 256, 250, 40, loads=0.9),
    point("hf", 0, 2000, 20),
    point("hf", 8, 1800, 20),
    point("hf", 256, 500, 80, loads=0.8),
]


def test_each_engine_is_compared_with_its_own_no_adapter_run() -> None:
    rows = scaling_table(POINTS).splitlines()
    assert "| vllm | 256 | 250 | 0.25x | 5.0 / 40.0 | 4.00x | 40 / 90 | 0.90 | 20 |" in rows
    assert "| hf | 256 | 500 | 0.25x | 5.0 / 80.0 | 4.00x | 40 / 90 | 0.80 | 20 |" in rows
    baseline = (
        "| hf | 0 (base model: the baseline) | 2000 | 1.00x | 5.0 / 20.0 | 1.00x | 40 / 90 | 0.00 | - |"
    )
    assert baseline in rows


def test_a_table_without_an_engines_baseline_is_refused_naming_the_engine() -> None:
    with pytest.raises(ValueError, match="hf"):
        scaling_table([p for p in POINTS if not (p.engine == "hf" and p.adapters == 0)])


def test_the_plot_is_a_png_of_both_panels(tmp_path: Path) -> None:
    from PIL import Image

    path = plot_scaling(POINTS, lru=32, title="test", path=tmp_path / "images" / "scaling.png")
    with Image.open(path) as image:
        assert image.format == "PNG"
        width, height = image.size
    assert width > 2 * height  # two panels side by side


def test_requests_spread_uniformly_over_exactly_n_adapters() -> None:
    from bench.inference_multilora_scaling import adapter_draws

    draws = adapter_draws(8, 8000, seed=1)
    counts = Counter(draws)
    assert sorted(counts) == [f"a{i:03d}" for i in range(8)]
    assert all(800 < count < 1200 for count in counts.values())
    assert adapter_draws(8, 100, seed=1) == draws[:100]  # seeded: every engine gets the same mix
    assert adapter_draws(0, 3, seed=random.randrange(9)) == [None, None, None]


@pytest.mark.parametrize(
    ("text", "message"), [("1,x", "whole numbers"), ("0,8", "1 or more"), ("", "at least")]
)
def test_bad_adapter_counts_are_refused_saying_why(text: str, message: str) -> None:
    from bench.inference_multilora_scaling import parse_counts

    with pytest.raises(argparse.ArgumentTypeError, match=message):
        parse_counts(text)
    assert parse_counts("256,1,8,8") == [1, 8, 256]
