"""bench/train_throughput.py, whose ``--device cuda`` run bench/gpu_check.sh makes on a lent GPU.

The CPU half runs in every ``make test``: the whole script with ``--shape tiny`` (the same
Qwen2 architecture as the 0.5B GPU shape, the same arms, parity gate and figures), the 0.5B
shape's size, and how MFU is computed. The GPU half (``-m gpu``) trains the worker on CUDA
in bf16 against TRL on the same GPU and against itself on the CPU in float32.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench import gpu_ceiling
from bench import train_throughput as bench

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_cpu_half_trains_both_arms_with_a_tiny_model_and_reports_the_ratio(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    figures = tmp_path / "figures.json"
    benchmarks_md = (REPO / "docs" / "benchmarks.md").read_text()
    completed = subprocess.run(
        [sys.executable, "bench/train_throughput.py", "--shape", "tiny", "--steps", "3", "--repeat", "1",
         "--batch-size", "2", "--max-length", "64", "--warmup", "1", "--threads", "1",
         "--arms", "tailor-padded,trl-padded", "--json", str(figures), "--work-dir", str(tmp_path / "work")],
        cwd=REPO, capture_output=True, text=True, timeout=540,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(figures.read_text())
    tailor, trl = result["results"]["tailor-padded"], result["results"]["trl-padded"]
    assert set(result["results"]) == {"tailor-padded", "trl-padded"}
    # The parity gate passed: same tokens and labels, same first-batch loss in float32.
    assert tailor["digest"] == trl["digest"]
    assert tailor["first_loss"] == pytest.approx(trl["first_loss"], rel=1e-4)
    assert tailor["steps"] == trl["steps"] == 3
    assert tailor["tokens_per_s"] > 0 and trl["tokens_per_s"] > 0
    assert tailor["peak_mib"] > 0 and trl["peak_mib"] > 0
    assert result["tailor_over_trl"] == pytest.approx(tailor["tokens_per_s"] / trl["tokens_per_s"])
    assert f"tailor-padded / trl-padded tokens/s: {result['tailor_over_trl']:.2f}x" in completed.stdout
    assert result["ceiling"] is None  # no MFU without a GPU
    assert json.loads((tmp_path / "work" / "model" / "config.json").read_text())["model_type"] == "qwen2"
    # A code check's figures mean nothing: they never reach the docs.
    assert (REPO / "docs" / "benchmarks.md").read_text() == benchmarks_md

    # --record writes a saved run's section (as a GPU run's is brought back), machine line included.
    from bench import report

    docs = tmp_path / "benchmarks.md"
    section = "<!-- bench:train_throughput:begin -->\nstale figures\n<!-- bench:train_throughput:end -->"
    docs.write_text(f"# Benchmarks\n\n{section}\n")
    monkeypatch.setattr(report, "BENCHMARKS_MD", docs)
    bench.record(figures)
    recorded = docs.read_text()
    assert "stale figures" not in recorded and result["section"]["table"] in recorded
    assert f"- machine: {result['section']['machine']}" in recorded


def test_the_gpu_shape_is_qwen2_5_0_5b_sized() -> None:
    from transformers import AutoModelForCausalLM

    class Tokenizer:  # only what model_config reads
        pad_token_id, eos_token_id = 0, 1

        def __len__(self) -> int:
            return 512

    config = bench.model_config(bench.SHAPES["cuda"], Tokenizer())
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    assert type(model).__name__ == "Qwen2ForCausalLM"
    # Qwen2.5-0.5B has 494,032,768 parameters (its model card: 0.49B).
    assert sum(parameter.numel() for parameter in model.parameters()) == 494_032_768


def test_mfu_counts_six_flops_per_matmul_parameter_against_the_gpus_dense_bf16_peak(tmp_path: Path) -> None:
    config = {"hidden_size": 896, "num_hidden_layers": 24, "num_attention_heads": 14,
              "num_key_value_heads": 2, "intermediate_size": 4864, "vocab_size": 151936}  # fmt: skip
    (tmp_path / "config.json").write_text(json.dumps(config))
    matmul = gpu_ceiling.matmul_parameters(tmp_path)
    # Attention (q, o full; k, v of 2 KV heads), the SwiGLU MLP, and the tied head.
    assert matmul == 24 * (896 * 896 * 2 + 896 * 128 * 2 + 3 * 896 * 4864) + 151936 * 896
    ceiling = gpu_ceiling.Ceiling("NVIDIA H100 80GB HBM3", 989e12, 800e12, 6 * matmul)
    mfu = ceiling.mfu(100_000)
    assert mfu["model_tflops"] == pytest.approx(6 * matmul * 100_000 / 1e12)
    assert mfu["mfu"] == pytest.approx(6 * matmul * 100_000 / 989e12)
    assert mfu["mfu_of_measured_matmul"] == pytest.approx(6 * matmul * 100_000 / 800e12)
    assert gpu_ceiling.Ceiling("Tesla T4", None, 60e12, 6).mfu(1)["mfu"] is None


@pytest.mark.parametrize(
    ("device_name", "peak"),
    [
        ("NVIDIA H100 80GB HBM3", 989e12),  # SXM
        ("NVIDIA H100 PCIe", 756e12),
        ("NVIDIA H100 NVL", 835e12),
        ("NVIDIA H200", 989e12),
        ("NVIDIA H200 NVL", 835e12),
        ("Tesla T4", None),
    ],
)
def test_the_datasheet_peak_is_read_off_the_gpus_name(device_name: str, peak: float | None) -> None:
    assert gpu_ceiling.datasheet_peak(device_name) == peak


def test_arms_must_include_the_two_the_parity_gate_compares() -> None:
    completed = subprocess.run(
        [sys.executable, "bench/train_throughput.py", "--arms", "tailor-packed,trl-padded"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert completed.returncode == 2
    assert "--arms" in completed.stderr and "tailor-padded and trl-padded" in completed.stderr


# The GPU half.


@pytest.fixture(scope="module")
def tiny_spec(tmp_path_factory: pytest.TempPathFactory) -> bench.Spec:
    work = tmp_path_factory.mktemp("train-bench")
    bench.build_model(work / "model", bench.SHAPES["tiny"], "float32")
    bench.write_chat_data(work / "train.jsonl", count=48, seed=1)
    bench.write_chat_data(work / "eval.jsonl", count=4, seed=2)
    return bench.Spec(
        work_dir=str(work), device="cuda", batch_size=4, max_length=256,
        budgets=bench.budgets_for(work, 12, 4, 256), warmup_steps_dropped=2, threads=2, evaluate=True,
    )  # fmt: skip


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_the_worker_trains_on_cuda_in_bf16_like_trl_and_like_itself_on_the_cpu(tiny_spec: bench.Spec) -> None:
    from dataclasses import replace

    tailor = bench.tailor_arm(tiny_spec, packing=False)
    trl = bench.trl_arm(tiny_spec, packing=False)
    bench.parity_gate(tailor, trl, "cuda")  # same tokens and labels; first-batch losses within 1e-2
    on_cpu = bench.tailor_arm(replace(tiny_spec, device="cpu"), packing=False)
    assert tailor["digest"] == on_cpu["digest"]
    # bf16 autocast on the GPU against float32 on the CPU: the same loss up to bf16 rounding.
    assert tailor["first_loss"] == pytest.approx(on_cpu["first_loss"], rel=2e-2)
    assert tailor["steps"] == trl["steps"] == 12
    losses = [evaluation["eval_loss"] for evaluation in tailor["evaluations"]]
    assert len(losses) == 3 and all(loss == loss and loss < 1e4 for loss in losses)  # finite
    assert tailor["peak_mib"] > 0 and tailor["tokens_per_s"] > 0
