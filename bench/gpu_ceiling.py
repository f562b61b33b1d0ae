"""What a GPU training run's MFU is measured against: the datasheet's dense bf16 peak and a measured matmul.

MFU = 6·N·tokens/s over the peak, N the parameters that take part in a matmul per token.
Both ceilings are kept: the datasheet's is the number MFU is conventionally quoted against,
the measured matmul (about 800 TFLOP/s on an H100 SXM, against 989) is what this card reaches
at best through the same library, so the gap between the two is not the trainer's.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path

# Dense (no sparsity) bf16 Tensor Core peaks, by what torch.cuda.get_device_name() contains,
# most specific first. NVIDIA's datasheets give them with 2:4 sparsity, twice these: H100 SXM
# 1,979 TFLOPS, H100 NVL 1,671, H100 PCIe 1,513 (H100 Tensor Core GPU datasheet); H200 SXM
# 1,979 and H200 NVL 1,671 (H200 datasheet); A100 624 (A100 datasheet). The SXM H100 reports itself as "H100 80GB HBM3".
BF16_DENSE_PEAKS = (
    ("H200 NVL", 835e12),
    ("H200", 989e12),
    ("H100 NVL", 835e12),
    ("H100 PCIe", 756e12),
    ("H100", 989e12),
    ("A100", 312e12),
)


@dataclass(frozen=True)
class Ceiling:
    """What MFU is measured against on a GPU: the datasheet's dense bf16 peak and a measured matmul."""

    device_name: str
    datasheet_flops: float | None  # None: a GPU missing from BF16_DENSE_PEAKS
    matmul_flops: float  # an 8192^3 bf16 matmul on random data, median of 10 after 3 warm-ups
    flops_per_token: float  # 6·N

    def mfu(self, tokens_per_s: float) -> dict[str, float | None]:
        achieved = tokens_per_s * self.flops_per_token
        return {
            "model_tflops": achieved / 1e12,
            "mfu": achieved / self.datasheet_flops if self.datasheet_flops else None,
            "mfu_of_measured_matmul": achieved / self.matmul_flops,
        }


def datasheet_peak(device_name: str) -> float | None:
    """The dense bf16 peak of the GPU whose torch name is ``device_name`` (None if unknown)."""
    return next((flops for key, flops in BF16_DENSE_PEAKS if key in device_name), None)


def measure_ceiling(model_dir: Path) -> Ceiling:
    """The GPU's name, datasheet peak and measured bf16 matmul rate, and 6·N of the model in ``model_dir``."""
    import torch

    size = 8192
    a, b, c = (torch.randn(size, size, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    for _ in range(3):
        torch.matmul(a, b, out=c)
    times = []
    for _ in range(10):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        torch.matmul(a, b, out=c)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1000)
    del a, b, c
    torch.cuda.empty_cache()
    name = torch.cuda.get_device_name()
    return Ceiling(
        device_name=name,
        datasheet_flops=datasheet_peak(name),
        matmul_flops=2 * size**3 / statistics.median(times),
        flops_per_token=6 * matmul_parameters(model_dir),
    )


def matmul_parameters(model_dir: Path) -> int:
    """Parameters that take part in a matmul per token: all but the embedding lookup (the head counts)."""
    config = json.loads((model_dir / "config.json").read_text())
    hidden, layers, intermediate = (
        config["hidden_size"],
        config["num_hidden_layers"],
        config["intermediate_size"],
    )
    head_dim = hidden // config["num_attention_heads"]
    attention = hidden * hidden * 2 + hidden * head_dim * config["num_key_value_heads"] * 2
    return layers * (attention + 3 * hidden * intermediate) + config["vocab_size"] * hidden
