"""Training throughput: the worker's training loop against TRL's SFTTrainer, same model, data, LoRA and batch.

The protocol of docs/research/training.md §6, scaled to what a CPU machine can run in minutes:

- **inputs, identical for every arm**: a randomly initialised model of a fixed shape (saved
  once, loaded by every arm), tailor-tiny's tokenizer and ChatML template with its vocabulary
  padded, a seeded synthetic chat set whose lengths are drawn log-normally (so padding
  matters), LoRA r=16, alpha=32, dropout 0 on all linear layers, AdamW lr 2e-4 with the same
  10-step warm-up then constant (given to TRL as its optimizer and scheduler), gradient
  clipping at 1.0, the same batch size and max length, assistant-only loss, sdpa attention,
  no gradient checkpointing, examples in file order;
- **arms**, each in its own process: ``tailor`` (``TrainingLoop``) and ``trl``
  (``SFTTrainer``), both padded; ``tailor`` packed; and TRL's own packing (``bfd``,
  padding-free) for reference; every arm runs once per repeat, interleaved, so a change in the
  machine's load hits all arms alike, and medians over the repeats are reported;
- **parity gate** before any figure: both arms must train on identical tokens and labels
  (hashes of every example's input ids and assistant mask) and report the same loss on the
  first batch (1e-4 relative in float32);
- **measurements**: input tokens per second over the steps after the first ``--warmup``
  (evaluation time excluded), the peak resident set size while training (the child's VmHWM,
  reset when training starts: ``ru_maxrss`` would carry the parent's size over), and the
  evaluation loss (mean NLL of the assistant tokens of a held-out set, computed by one function
  shared by all arms) after fixed budgets of trained input tokens.

With ``--device cuda`` the same runs use Qwen2.5-0.5B's architecture and shape (Qwen2, random
init) in bfloat16 and also report peak allocated memory and MFU: 6·N·tokens/s over the GPU's
dense bf16 peak, N the parameters that take part in a matmul per token (the embedding lookup
excluded, the head included), the peak read off the device's name (bench/gpu_ceiling.py),
and the same ratio against a bf16 matmul measured on the device. LoRA skips the weight
gradients of the frozen base, so the work actually done is nearer 4·N per token: MFU by the
usual 6·N count overstates the hardware's occupation by about 1.5x and is reported as such.
``bench/gpu_check.sh`` runs this on a lent GPU; ``--shape tiny`` is the CPU-sized check of the
same code (tests/gpu/test_train_throughput.py).

    python bench/train_throughput.py [--steps 10] [--repeat 3] [--batch-size 8] [--device cpu]
        [--shape tiny] [--arms tailor-padded,trl-padded] [--json figures.json] [--no-write]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.gpu_ceiling import Ceiling, measure_ceiling  # noqa: E402
from bench.report import machine_summary, write_section  # noqa: E402

LORA_RANK, LORA_ALPHA = 16, 32
LEARNING_RATE = 2e-4
WARMUP_STEPS = 10
MAX_GRAD_NORM = 1.0
SEED = 1234
@dataclass(frozen=True)
class Shape:
    """A model built from its family's transformers config class, random init."""

    model_type: str  # "llama" or "qwen2": transformers' AutoConfig name
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    tied: bool

    def describe(self) -> str:
        return (
            f"{self.model_type} shape hidden {self.hidden}, {self.layers} layers, {self.heads} heads "
            f"({self.kv_heads} KV), ffn {self.intermediate}, vocab {self.vocab} "
            f"({'tied' if self.tied else 'untied'}), random init"
        )


SHAPES = {
    # ~6.5x tailor-tiny's matmul FLOPs per token, yet a few hundred tokens/s on two shared cores.
    "cpu": Shape("llama", 384, 4, 6, 2, 1024, 4096, False),
    # Qwen2.5-0.5B's config (494M parameters, 358M of them in matmuls per token besides the head).
    "cuda": Shape("qwen2", 896, 24, 14, 2, 4864, 151936, True),
    # The same architecture at a size a loaded CI core trains in seconds: checks the code, not speed.
    "tiny": Shape("qwen2", 64, 2, 4, 2, 128, 0, True),
}
ARMS = ("tailor-padded", "trl-padded", "tailor-packed", "trl-packed")
PARITY_ARMS = ("tailor-padded", "trl-padded")  # the gate and every ratio compare these two


@dataclass(frozen=True)
class Spec:
    """What every arm shares; written to a JSON file each child reads."""

    work_dir: str
    device: str
    batch_size: int
    max_length: int
    budgets: list[int]  # trained input tokens at which to evaluate; the last one ends the run
    warmup_steps_dropped: int
    threads: int
    evaluate: bool  # False for the timing-only repeats: the losses of a run do not change between repeats

    @property
    def model_dir(self) -> Path:
        return Path(self.work_dir) / "model"

    @property
    def train_path(self) -> Path:
        return Path(self.work_dir) / "train.jsonl"

    @property
    def eval_path(self) -> Path:
        return Path(self.work_dir) / "eval.jsonl"


# Inputs.


def model_config(shape: Shape, tokenizer):  # type: ignore[no-untyped-def]
    """The transformers config of ``shape``, its vocabulary at least the tokenizer's."""
    from transformers import AutoConfig

    return AutoConfig.for_model(
        shape.model_type,
        vocab_size=max(shape.vocab, len(tokenizer)),
        hidden_size=shape.hidden,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.kv_heads,
        intermediate_size=shape.intermediate,
        max_position_embeddings=4096,
        tie_word_embeddings=shape.tied,
        bos_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def build_model(directory: Path, shape: Shape, dtype: str = "float32") -> None:
    """Save tailor-tiny's tokenizer and a random-init model of ``shape`` into ``directory``.

    Saved in the dtype the arms load (bfloat16 on CUDA), so the 0.5B shape writes 1 GB, not 2.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from services.common.tailor_tiny import ensure_tailor_tiny

    tiny = ensure_tailor_tiny(Path(directory).parent / "tailor-tiny")
    tokenizer = AutoTokenizer.from_pretrained(tiny)
    torch.manual_seed(SEED)
    model = AutoModelForCausalLM.from_config(model_config(shape, tokenizer), dtype=getattr(torch, dtype))
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)


def write_chat_data(path: Path, count: int, seed: int) -> None:
    """Multi-turn chats with log-normally distributed message lengths (words from tailor-tiny's corpus)."""
    from services.common.tailor_tiny.build import CORPUS_PATH

    words = sorted(set(re.findall(r"[A-Za-z]+", CORPUS_PATH.read_text(encoding="utf-8"))))
    rng = random.Random(seed)

    def text(median_words: float) -> str:
        length = max(1, min(300, int(rng.lognormvariate(math.log(median_words), 1.0))))
        return " ".join(rng.choice(words) for _ in range(length))

    with path.open("w") as output:
        for _ in range(count):
            messages = [{"role": "system", "content": text(6)}] if rng.random() < 0.3 else []
            for _ in range(rng.choice((1, 1, 1, 2))):
                messages += [
                    {"role": "user", "content": text(12)},
                    {"role": "assistant", "content": text(24)},
                ]
            output.write(json.dumps({"messages": messages}) + "\n")


# What every arm shares.


def peak_rss_kib() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))


def reset_peak_rss() -> None:
    """Start VmHWM over from the current resident size (Linux: clear_refs 5)."""
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")


def load_model(spec: Spec):  # type: ignore[no-untyped-def]
    """The shared base model with a fresh, identically seeded LoRA adapter."""
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from services.trainer.worker.lora import lora_config

    dtype = torch.bfloat16 if spec.device == "cuda" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(spec.model_dir, dtype=dtype, attn_implementation="sdpa")
    model.requires_grad_(False)
    torch.manual_seed(SEED)
    return get_peft_model(model.to(spec.device), lora_config(LORA_RANK, LORA_ALPHA, 0.0))


def tokenized(spec: Spec, path: Path):  # type: ignore[no-untyped-def]
    """Examples as the worker tokenizes them (also the reference of the parity gate)."""
    from services.trainer.worker.data import load_examples
    from services.trainer.worker.models import load_tokenizer

    tokenizer = load_tokenizer(str(spec.model_dir))
    return tokenizer, load_examples(
        path, tokenizer, preference=False, max_length=spec.max_length, file_param="bench"
    )


def examples_digest(pairs: Iterator[tuple[list[int], list[int]]]) -> str:
    """One hash over every example's (input ids, trained-token mask)."""
    digest = hashlib.sha256()
    for input_ids, mask in pairs:
        digest.update(json.dumps([list(input_ids), [int(bool(m)) for m in mask]]).encode())
    return digest.hexdigest()


def evaluation_loss(model, eval_examples, device: str) -> float:  # type: ignore[no-untyped-def]
    """Mean NLL of the assistant tokens of the held-out examples, one example per forward pass."""
    import torch
    import torch.nn.functional as F

    from services.trainer.worker.data import IGNORE_INDEX

    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for example in eval_examples:
            (sequence,) = example.sequences
            input_ids = torch.tensor([sequence.input_ids], device=device)
            labels = torch.tensor(sequence.labels[1:], device=device)
            logits = model(input_ids=input_ids).logits[0, :-1].float()
            total += F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX, reduction="sum").item()
            count += int((labels != IGNORE_INDEX).sum())
    model.train(was_training)
    return total / count


class StepClock:
    """Wall time per step with evaluation excluded, tokens per step, and the evaluations at each budget."""

    def __init__(self, spec: Spec, model, eval_examples) -> None:  # type: ignore[no-untyped-def]
        self.spec, self.model, self.eval_examples = spec, model, eval_examples
        self.step_seconds: list[float] = []
        self.step_tokens: list[int] = []
        self.evaluations: list[dict[str, float]] = []
        self.tokens = 0
        self._last = time.perf_counter()

    def start(self) -> None:
        self._synchronize()
        self._last = time.perf_counter()

    def step_done(self, tokens: int) -> bool:
        """Record a finished step; evaluates at each budget crossed. Returns True once the last budget is reached."""
        self._synchronize()
        now = time.perf_counter()
        self.step_seconds.append(now - self._last)
        self.step_tokens.append(tokens)
        self.tokens += tokens
        pending = [
            b
            for b in self.spec.budgets
            if b <= self.tokens and b not in {e["budget"] for e in self.evaluations}
        ]
        if pending and self.spec.evaluate:
            loss = evaluation_loss(self.model, self.eval_examples, self.spec.device)
            self.evaluations.append({"budget": pending[-1], "tokens": self.tokens, "eval_loss": loss})
        self._last = time.perf_counter()  # evaluation time is not training time
        return self.tokens >= self.spec.budgets[-1]

    def _synchronize(self) -> None:
        if self.spec.device == "cuda":
            import torch

            torch.cuda.synchronize()

    def result(self) -> dict[str, Any]:
        steady = slice(self.spec.warmup_steps_dropped, None)
        seconds, tokens = self.step_seconds[steady], self.step_tokens[steady]
        return {
            "steps": len(self.step_seconds),
            "tokens_per_s": sum(tokens) / sum(seconds),
            "steady_step_seconds": seconds,
            "evaluations": self.evaluations,
        }


def memory_result(spec: Spec) -> dict[str, float]:
    if spec.device == "cuda":
        import torch

        return {"peak_mib": torch.cuda.max_memory_allocated() / 2**20,
                "reserved_mib": torch.cuda.max_memory_reserved() / 2**20}  # fmt: skip
    return {"peak_mib": peak_rss_kib() / 1024}


def begin_training_measurements(spec: Spec) -> None:
    if spec.device == "cuda":
        import torch

        torch.cuda.reset_peak_memory_stats()
    else:
        reset_peak_rss()


# The arms.


def tailor_arm(spec: Spec, packing: bool) -> dict[str, Any]:
    import torch

    from services.trainer.worker.training import SupervisedObjective, TrainingConfig, TrainingLoop

    tokenizer, train = tokenized(spec, spec.train_path)
    _, evaluation = tokenized(spec, spec.eval_path)
    model = load_model(spec)
    config = TrainingConfig(
        n_epochs=1,
        batch_size=spec.batch_size,
        learning_rate=LEARNING_RATE,
        seed=SEED,
        max_length=spec.max_length,
        pad_token_id=tokenizer.pad_token_id,
        warmup_steps=WARMUP_STEPS,
        lr_decay=False,
        max_grad_norm=MAX_GRAD_NORM,
        packing=packing,
        # One forward pass per step, as TRL does with gradient_accumulation_steps=1.
        micro_batch_tokens=spec.batch_size * spec.max_length,
        metrics_interval=10**9,
        shuffle=False,
    )
    loop = TrainingLoop(
        model, SupervisedObjective(), train.examples, config, device=torch.device(spec.device),
        autocast_dtype=torch.bfloat16 if spec.device == "cuda" else None,
    )  # fmt: skip
    clock = StepClock(spec, model, evaluation.examples)
    first_loss = None
    begin_training_measurements(spec)
    clock.start()
    for report in loop.run():
        first_loss = report.metrics.train_loss if first_loss is None else first_loss
        if clock.step_done(report.input_tokens):
            break
    return {
        **clock.result(),
        **memory_result(spec),
        "first_loss": first_loss,
        "digest": examples_digest(
            (seq.input_ids, [label != -100 for label in seq.labels])
            for ex in train.examples
            for seq in ex.sequences
        ),
    }


def trl_arm(spec: Spec, packing: bool) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    tokenizer, _ = tokenized(spec, spec.train_path)
    _, evaluation = tokenized(spec, spec.eval_path)
    model = load_model(spec)
    records = [json.loads(line) for line in spec.train_path.read_text().splitlines()]
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    optimizer = torch.optim.AdamW(
        trainable, lr=LEARNING_RATE, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, fused=True
    )
    # The same schedule as the worker's: warm-up over WARMUP_STEPS starting above zero, then constant.
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: (step + 1) / (WARMUP_STEPS + 1) if step < WARMUP_STEPS else 1.0
    )
    clock = StepClock(spec, model, evaluation.examples)
    losses: list[float] = []

    class Measure(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
            begin_training_measurements(spec)
            clock.start()

        def on_log(self, args, state, control, logs=None, **kwargs):  # type: ignore[no-untyped-def]
            if logs and "num_tokens" in logs:
                losses.append(logs["loss"])
                if clock.step_done(int(logs["num_tokens"]) - clock.tokens):
                    control.should_training_stop = True

    with tempfile.TemporaryDirectory() as output_dir:
        args = SFTConfig(
            output_dir=output_dir,
            per_device_train_batch_size=spec.batch_size,
            gradient_accumulation_steps=1,
            max_steps=10**6,
            max_length=spec.max_length,
            assistant_only_loss=True,
            packing=packing,
            packing_strategy="bfd",
            gradient_checkpointing=False,
            bf16=spec.device == "cuda",
            use_cpu=spec.device == "cpu",
            train_sampling_strategy="sequential",
            shuffle_dataset=False,
            max_grad_norm=MAX_GRAD_NORM,
            logging_steps=1,
            save_strategy="no",
            report_to="none",
            disable_tqdm=True,
            dataloader_num_workers=0,
            seed=SEED,
        )
        trainer = SFTTrainer(
            model=model, args=args, train_dataset=Dataset.from_list(records), processing_class=tokenizer,
            optimizers=(optimizer, scheduler), callbacks=[Measure()],
        )  # fmt: skip
        digest = None
        if not packing:  # packed rows no longer map to examples one by one
            dataset = trainer.train_dataset
            masks = ([label != -100 for label in labels] for labels in dataset["labels"])
            digest = examples_digest(zip(dataset["input_ids"], masks, strict=True))
        trainer.train()
    return {**clock.result(), **memory_result(spec), "first_loss": losses[0], "digest": digest}


def child(arm: str, spec_path: Path) -> dict[str, Any]:
    import torch

    spec = Spec(**json.loads(spec_path.read_text()))
    torch.set_num_threads(spec.threads)
    packing = arm.endswith("packed")
    result = tailor_arm(spec, packing) if arm.startswith("tailor") else trl_arm(spec, packing)
    return {"arm": arm, **result}


# The parent.


def run_arm(arm: str, spec_path: Path, threads: int) -> dict[str, Any]:
    environment = {
        **os.environ,
        # Kept after the repository: a lent GPU's carried wheels are on the path (bench/gpu_check.sh).
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        "OMP_NUM_THREADS": str(threads),
        "TOKENIZERS_PARALLELISM": "false",
    }
    completed = subprocess.run(
        [sys.executable, __file__, "--child", arm, "--spec", str(spec_path)],
        capture_output=True, text=True, cwd=REPO, env=environment,
    )  # fmt: skip
    if completed.returncode != 0:
        raise SystemExit(f"arm {arm} failed:\n{completed.stderr[-4000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def budgets_for(spec_dir: Path, steps: int, batch_size: int, max_length: int) -> list[int]:
    """Three evaluation budgets: the tokens of the first steps/3, 2*steps/3 and `steps` unpacked steps."""
    from transformers import AutoTokenizer

    from services.trainer.worker.data import load_examples

    tokenizer = AutoTokenizer.from_pretrained(spec_dir / "model")
    examples = load_examples(
        spec_dir / "train.jsonl", tokenizer, preference=False, max_length=max_length, file_param="bench"
    )
    per_step = [
        sum(e.num_tokens for e in examples.examples[i : i + batch_size])
        for i in range(0, len(examples), batch_size)
    ]
    return [sum(per_step[: steps * k // 3]) for k in (1, 2, 3)]


def parity_gate(tailor: dict[str, Any], trl: dict[str, Any], device: str) -> None:
    """Stop before any figure unless both padded arms trained on the same tokens and labels with the same loss."""
    if tailor["digest"] != trl["digest"]:
        raise SystemExit("parity gate: the arms trained on different tokens or labels")
    gap = abs(tailor["first_loss"] - trl["first_loss"]) / trl["first_loss"]
    if gap > (1e-4 if device == "cpu" else 1e-2):
        raise SystemExit(
            f"parity gate: first-batch losses differ: {tailor['first_loss']} vs {trl['first_loss']}"
        )


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One arm over its repeats: median and spread of throughput, step times pooled, the first run's losses."""
    speeds = [run["tokens_per_s"] for run in runs]
    steps = sorted(seconds for run in runs for seconds in run["steady_step_seconds"])
    return {
        **runs[0],
        "tokens_per_s": statistics.median(speeds),
        "tokens_per_s_range": (min(speeds), max(speeds)),
        "median_step_s": statistics.median(steps),
        "p90_step_s": steps[math.ceil(0.9 * (len(steps) - 1))],
        "peak_mib": statistics.median(run["peak_mib"] for run in runs),
    }


def table(
    results: dict[str, dict[str, Any]], device: str, ceiling: Ceiling | None
) -> str:
    baseline = results["trl-padded"]
    memory = "peak alloc MiB" if device == "cuda" else "peak RSS MiB (training)"
    budgets = [e["budget"] for e in baseline["evaluations"]]
    header = (
        f"| arm | tok/s median (min-max) | vs TRL padded | median step s (p90) | {memory} | vs TRL | "
        + " | ".join(f"eval loss @ {b / 1000:.0f}k tok" for b in budgets)
        + (" | MFU (6N, datasheet) | of measured matmul |" if ceiling else " |")
    )
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for arm, r in results.items():
        losses = {e["budget"]: e["eval_loss"] for e in r["evaluations"]}
        low, high = r["tokens_per_s_range"]
        cells = [
            arm, f"{r['tokens_per_s']:.0f} ({low:.0f}-{high:.0f})",
            f"{r['tokens_per_s'] / baseline['tokens_per_s']:.2f}x",
            f"{r['median_step_s']:.3f} ({r['p90_step_s']:.3f})", f"{r['peak_mib']:.0f}",
            f"{r['peak_mib'] / baseline['peak_mib']:.2f}x",
            *[f"{losses[b]:.4f}" if b in losses else "-" for b in budgets],
        ]  # fmt: skip
        if ceiling:
            mfu = ceiling.mfu(r["tokens_per_s"])
            cells.append(f"{mfu['mfu']:.1%}" if mfu["mfu"] is not None else "unknown GPU")
            cells.append(f"{mfu['mfu_of_measured_matmul']:.1%}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def gpu_note() -> str:
    """Says so when the GPU figures could not be taken on this machine."""
    import torch

    if torch.cuda.is_available():
        return ""
    return " No CUDA GPU on this machine: the `--device cuda` figures (0.5B shape, bf16, MFU) are not measured here."


@contextlib.contextmanager
def work_directory(keep: str | None) -> Iterator[Path]:
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        yield Path(keep)
        return
    directory = Path(tempfile.mkdtemp(prefix="bench-train-"))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def record(figures: Path) -> None:
    """Write the docs section a ``--json`` run saved (a lent GPU's: its tree does not come back)."""
    write_section(**json.loads(figures.read_text())["section"])


def parse_arms(text: str) -> list[str]:
    arms = [arm.strip() for arm in text.split(",") if arm.strip()]
    unknown = sorted(set(arms) - set(ARMS))
    if unknown or not set(PARITY_ARMS) <= set(arms):
        raise argparse.ArgumentTypeError(
            f"--arms: {','.join(unknown) or text!r}: arms are {', '.join(ARMS)}, and must include "
            f"{' and '.join(PARITY_ARMS)} (the parity gate and every ratio compare them)"
        )
    return [arm for arm in ARMS if arm in arms]  # the table's order


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument(
        "--shape", choices=sorted(SHAPES), help="model shape (default: the device's; tiny: a code check)"
    )
    parser.add_argument("--arms", type=parse_arms, default=list(ARMS), help="comma-separated subset of arms")
    parser.add_argument("--steps", type=int, default=10, help="unpacked steps of the longest budget")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--warmup", type=int, default=2, help="first steps left out of the timing")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads of every arm")
    parser.add_argument(
        "--repeat", type=int, default=3, help="interleaved runs of every arm; medians reported"
    )
    parser.add_argument("--work-dir", help="keep the model and data here (default: a temporary directory)")
    parser.add_argument("--json", type=Path, help="also write every figure and the docs section here")
    parser.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    parser.add_argument(
        "--record", type=Path, metavar="JSON",
        help="only write the docs section saved in a --json file (a GPU run's, brought back)",
    )  # fmt: skip
    parser.add_argument("--child", choices=ARMS, help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        print(json.dumps(child(args.child, Path(args.spec))))
        return 0
    if args.record:
        record(args.record)
        return 0
    shape_name = args.shape or args.device
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: torch sees no CUDA GPU on this machine")

    load_before = os.getloadavg()
    started = time.monotonic()
    with work_directory(args.work_dir) as work_dir:
        model_dir = work_dir / "model"
        built_for = work_dir / "model" / "built-for.json"  # a kept --work-dir is rebuilt when the shape changes
        wanted = json.dumps({"shape": shape_name, "device": args.device})
        if not built_for.exists() or built_for.read_text() != wanted:
            shutil.rmtree(model_dir, ignore_errors=True)
            build_model(model_dir, SHAPES[shape_name], "bfloat16" if args.device == "cuda" else "float32")
            built_for.write_text(wanted)
        built_seconds = time.monotonic() - started
        # Enough examples for the longest budget in every arm (TRL's packing reorders them by length).
        write_chat_data(work_dir / "train.jsonl", count=args.steps * args.batch_size * 2, seed=1)
        write_chat_data(work_dir / "eval.jsonl", count=12, seed=2)
        spec = Spec(
            work_dir=str(work_dir), device=args.device, batch_size=args.batch_size, max_length=args.max_length,
            budgets=budgets_for(work_dir, args.steps, args.batch_size, args.max_length),
            warmup_steps_dropped=args.warmup, threads=args.threads, evaluate=True,
        )  # fmt: skip
        runs: dict[str, list[dict[str, Any]]] = {arm: [] for arm in args.arms}
        for repeat in range(args.repeat):
            spec_path = work_dir / f"spec-{repeat}.json"
            spec_path.write_text(json.dumps({**asdict(spec), "evaluate": repeat == 0}))
            for arm in args.arms:  # interleaved: every arm once per repeat, so load changes hit all arms alike
                arm_started = time.monotonic()
                runs[arm].append(run_arm(arm, spec_path, args.threads))
                print(
                    f"== {arm} #{repeat + 1}: {time.monotonic() - arm_started:.0f} s",
                    file=sys.stderr,
                    flush=True,
                )
                if repeat == 0 and arm == "trl-padded":  # before any timing is worth reading
                    parity_gate(runs["tailor-padded"][0], runs["trl-padded"][0], args.device)
        results = {arm: summarize(arm_runs) for arm, arm_runs in runs.items()}
        ceiling = measure_ceiling(spec.model_dir) if args.device == "cuda" else None

    tailor, trl = results["tailor-padded"], results["trl-padded"]
    first_loss_gap = abs(tailor["first_loss"] - trl["first_loss"]) / trl["first_loss"]
    ratio = tailor["tokens_per_s"] / trl["tokens_per_s"]
    minutes = (time.monotonic() - started) / 60
    load_after = os.getloadavg()
    print(json.dumps(runs, indent=1), file=sys.stderr)
    result_table = table(results, args.device, ceiling)
    print(result_table)
    print(f"tailor-padded / trl-padded tokens/s: {ratio:.2f}x")
    if ceiling:
        print(
            f"{ceiling.device_name}: datasheet dense bf16 "
            + (f"{ceiling.datasheet_flops / 1e12:.0f}" if ceiling.datasheet_flops else "unknown")
            + f" TFLOP/s, measured 8192^3 bf16 matmul {ceiling.matmul_flops / 1e12:.0f} TFLOP/s; "
            f"6N = {ceiling.flops_per_token / 1e9:.2f} GFLOP per token"
        )
    command = (f"python bench/train_throughput.py --device {args.device} --shape {shape_name} --steps {args.steps} "
               f"--batch-size {args.batch_size} --max-length {args.max_length} --threads {args.threads} "
               f"--repeat {args.repeat} --arms {','.join(args.arms)}")  # fmt: skip
    shape = SHAPES[shape_name]
    description = (
        f"{shape.describe()}, "
        f"{'bfloat16' if args.device == 'cuda' else 'float32'}; LoRA r={LORA_RANK} alpha={LORA_ALPHA} on all "
        f"linear layers; batch {args.batch_size}, max length {args.max_length}, synthetic multi-turn chats with "
        f"log-normal lengths; {args.threads} torch threads per arm. Each arm in its own process, {args.repeat} "
        f"interleaved repeats (medians; eval losses from the first); tok/s are input tokens (padding "
        f"excluded) over steps {args.warmup + 1}+, evaluation excluded. "
        f"Parity gate passed: identical tokens and assistant masks, first-batch loss "
        f"{tailor['first_loss']:.5f} vs TRL {trl['first_loss']:.5f} (relative gap {first_loss_gap:.1e}). "
        f"`trl-packed` is TRL's BFD packing (padding-free): its steps hold more examples, so only its "
        f"throughput and loss at equal tokens compare. Load average {load_before[0]:.1f} before, "
        f"{load_after[0]:.1f} after; the run took {minutes:.1f} min (model built in {built_seconds:.0f} s)."
        + (
            f" GPU: {ceiling.device_name}; MFU = 6N·tok/s (N = {ceiling.flops_per_token / 6e6:.0f}M matmul "
            f"parameters) over the datasheet's dense bf16 peak, and over an 8192^3 bf16 matmul measured "
            f"on it ({ceiling.matmul_flops / 1e12:.0f} TFLOP/s); LoRA does about 4N per token, so the "
            f"hardware's occupation is about 2/3 of MFU."
            if ceiling
            else gpu_note()
        )
    )
    section = {
        "name": f"train_throughput_{args.device}" if args.device == "cuda" else "train_throughput",
        "title": f"Training throughput ({args.device}): worker vs TRL SFTTrainer",
        "description": description,
        "table": result_table,
        "command": command,
        "machine": machine_summary() + (f", {ceiling.device_name}" if ceiling else ""),
    }
    if args.json:
        figures = {"results": results, "runs": runs, "tailor_over_trl": ratio, "section": section,
                   "ceiling": asdict(ceiling) if ceiling else None,
                   "mfu": {arm: ceiling.mfu(r["tokens_per_s"]) for arm, r in results.items()} if ceiling else None,
                   "build_model_s": built_seconds, "total_s": minutes * 60}  # fmt: skip
        args.json.write_text(json.dumps(figures, indent=1))
    if shape_name == "tiny":
        print("--shape tiny checks the code only: its figures are not written to docs/benchmarks.md")
    elif not args.no_write:
        write_section(**section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
