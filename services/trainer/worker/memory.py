"""How a step fits in memory: gradient checkpointing and the micro-batch size, chosen from the model's size.

:func:`choose_memory_plan` is the one place this is decided. The worker settings
``TAILOR_WORKER_GRADIENT_CHECKPOINTING`` (``true``/``false``) and ``TAILOR_WORKER_MICRO_BATCH_TOKENS``
(a number of tokens) override either choice; their default, ``auto``/``0``, applies the rule:

**On the CPU** (memory is the host's, and training there is for small models):

- under 1B parameters: no checkpointing, micro-batches of up to 16,384 tokens (what every
  tailor-tiny run has always used);
- from 1B parameters: checkpointing on and micro-batches of up to 4,096 tokens, since
  activations of 16k tokens of a 1.5B model without checkpointing take ~45 GB in float32.

**On CUDA**, from the device's total memory M and the model's shape (hidden size h, L layers):

- what the step needs besides activations: the weights (parameters x bytes per weight),
  plus 2 GiB for the CUDA context, the adapter with its gradients and AdamW state, and one
  chunk of float32 logits (:mod:`.scoring` projects 4,096 positions at a time);
- activations get 80% of M minus that. Per token they take about 34·h bytes per layer in
  16-bit without checkpointing (Korthikanti et al., "Reducing Activation Recomputation in Large
  Transformer Models", 2022, leaving out the attention scores that sdpa never stores), and
  2·h bytes per layer plus one layer's 34·h with it; float32 doubles both;
- checkpointing stays off when a micro-batch of at least one full row (the max sequence
  length) fits without it, as it costs 20-30% more time; otherwise it is on.
- the micro-batch is what fits, rounded down to a power of two, within 256-65,536 tokens.

The choice is posted as an event, e.g. "Memory: gradient checkpointing on, micro-batches of
up to 8192 tokens (4 sequences of 2048), for 1.5B parameters on cuda with 79 GiB".
"""

from __future__ import annotations

from dataclasses import dataclass

GiB = 1024**3
CPU_CHECKPOINTING_FROM = 1_000_000_000  # parameters
CPU_SMALL_MODEL_TOKENS = 16_384
CPU_LARGE_MODEL_TOKENS = 4_096
CUDA_USABLE_SHARE = 0.8
CUDA_FIXED_RESERVE = 2 * GiB
ACTIVATION_BYTES_PER_HIDDEN = 34  # per token, per layer, in 16-bit, without checkpointing
CHECKPOINTED_BYTES_PER_HIDDEN = 2  # per token, per layer, in 16-bit: the layer's input kept
MIN_MICRO_BATCH_TOKENS = 256
MAX_MICRO_BATCH_TOKENS = 65_536


@dataclass(frozen=True)
class ModelSize:
    """What the rule needs to know about the model."""

    parameters: int
    hidden_size: int | None = None
    num_layers: int | None = None
    bytes_per_weight: int = 4  # float32; 2 for bfloat16


@dataclass(frozen=True)
class MemoryPlan:
    """The chosen gradient checkpointing and micro-batch size, and why."""

    gradient_checkpointing: bool
    micro_batch_tokens: int
    parameters: int
    device: str  # "cpu", or "cuda with 79 GiB"
    overridden: tuple[str, ...] = ()  # the settings that overrode the rule

    def describe(self, max_length: int) -> str:
        """The event's text."""
        sequences = max(1, self.micro_batch_tokens // max_length)
        overrides = f"; set by {', '.join(self.overridden)}" if self.overridden else ""
        return (
            f"Memory: gradient checkpointing {'on' if self.gradient_checkpointing else 'off'}, "
            f"micro-batches of up to {self.micro_batch_tokens} tokens "
            f"({sequences} sequence{'s' if sequences != 1 else ''} of {max_length}), "
            f"for {_count(self.parameters)} parameters on {self.device}{overrides}"
        )


def choose_memory_plan(
    size: ModelSize,
    *,
    max_length: int,
    device_type: str,
    device_memory: int | None = None,
    gradient_checkpointing: bool | None = None,
    micro_batch_tokens: int | None = None,
) -> MemoryPlan:
    """Apply the module's rule; a non-None ``gradient_checkpointing`` or ``micro_batch_tokens`` wins.

    ``device_memory`` is the CUDA device's total memory in bytes (None on the CPU).
    """
    if device_type == "cuda" and device_memory:
        checkpointing, tokens = _cuda_rule(size, max_length, device_memory, gradient_checkpointing)
        device = f"cuda with {device_memory / GiB:.0f} GiB"
    else:
        large = size.parameters >= CPU_CHECKPOINTING_FROM
        checkpointing = large
        tokens = CPU_LARGE_MODEL_TOKENS if large else CPU_SMALL_MODEL_TOKENS
        device = device_type
    overridden = []
    if gradient_checkpointing is not None:
        checkpointing = gradient_checkpointing
        overridden.append("TAILOR_WORKER_GRADIENT_CHECKPOINTING")
    if micro_batch_tokens:
        tokens = micro_batch_tokens
        overridden.append("TAILOR_WORKER_MICRO_BATCH_TOKENS")
    return MemoryPlan(checkpointing, tokens, size.parameters, device, tuple(overridden))


def _cuda_rule(
    size: ModelSize, max_length: int, device_memory: int, forced_checkpointing: bool | None
) -> tuple[bool, int]:
    budget = CUDA_USABLE_SHARE * device_memory - size.parameters * size.bytes_per_weight - CUDA_FIXED_RESERVE
    if not size.hidden_size or not size.num_layers:
        # Shape unknown: the CPU's rule by parameter count.
        large = size.parameters >= CPU_CHECKPOINTING_FROM
        return large, CPU_LARGE_MODEL_TOKENS if large else CPU_SMALL_MODEL_TOKENS
    scale = size.bytes_per_weight / 2  # activations follow the weights' dtype (autocast in 16-bit)
    full = ACTIVATION_BYTES_PER_HIDDEN * size.hidden_size * size.num_layers * scale
    kept = (
        CHECKPOINTED_BYTES_PER_HIDDEN * size.hidden_size * size.num_layers
        + ACTIVATION_BYTES_PER_HIDDEN * size.hidden_size
    ) * scale
    without = max(budget, 0) / full
    checkpointing = without < max_length if forced_checkpointing is None else forced_checkpointing
    fits = max(budget, 0) / (kept if checkpointing else full)
    return checkpointing, _power_of_two_within(fits)


def _power_of_two_within(tokens: float) -> int:
    power = MIN_MICRO_BATCH_TOKENS
    while power * 2 <= min(tokens, MAX_MICRO_BATCH_TOKENS):
        power *= 2
    return power


def _count(parameters: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if parameters >= size:
            return f"{parameters / size:.1f}{unit}"
    return str(parameters)
