"""Sampling parameters: OpenAI's ranges, checked once, before a request reaches an engine.

A value out of range is INVALID_ARGUMENT naming the field as OpenAI does (``temperature``,
``top_p``, ``max_tokens``, ``stop``, ``n``), so the gateway can put it in the error's
``param``. ``max_tokens`` is resolved here against the context length: absent, it is
whatever room the prompt leaves; present, prompt plus completion must fit, as vLLM and
OpenAI require.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from services.common.errors import InvalidArgument

MAX_TEMPERATURE = 2.0
MAX_STOP_SEQUENCES = 4
MAX_CHOICES = 128
# torch generators take seeds modulo 2**64; vLLM takes any int. Keep to int64 as the proto does.
SEED_RANGE = (-(2**63), 2**63 - 1)


@dataclass(frozen=True)
class SamplingSettings:
    """Validated sampling parameters with every default applied."""

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    n: int = 1

    @property
    def greedy(self) -> bool:
        """Temperature 0: always the most likely token."""
        return self.temperature == 0.0


def validate_sampling(
    *,
    temperature: float | None,
    top_p: float | None,
    max_tokens: int | None,
    stop: Sequence[str],
    seed: int | None,
    n: int | None,
    prompt_tokens: int,
    max_model_len: int,
    prompt_param: str = "messages",
) -> SamplingSettings:
    """Check the requested parameters and fill in defaults; InvalidArgument names the first bad field.

    ``prompt_param`` names the input (``messages`` or ``prompt``) in the error raised when the
    prompt alone leaves no room for a completion.
    """
    if temperature is not None and not 0.0 <= temperature <= MAX_TEMPERATURE:
        raise InvalidArgument(
            f"temperature must be between 0 and {MAX_TEMPERATURE:g}, got {temperature:g}", param="temperature"
        )
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise InvalidArgument(f"top_p must be greater than 0 and at most 1, got {top_p:g}", param="top_p")
    if n is not None and not 1 <= n <= MAX_CHOICES:
        raise InvalidArgument(f"n must be between 1 and {MAX_CHOICES}, got {n}", param="n")
    if len(stop) > MAX_STOP_SEQUENCES:
        raise InvalidArgument(
            f"stop takes at most {MAX_STOP_SEQUENCES} sequences, got {len(stop)}", param="stop"
        )
    if any(not sequence for sequence in stop):
        raise InvalidArgument("stop sequences must not be empty strings", param="stop")
    if seed is not None and not SEED_RANGE[0] <= seed <= SEED_RANGE[1]:
        raise InvalidArgument("seed must fit in a signed 64-bit integer", param="seed")

    room = max_model_len - prompt_tokens
    if room < 1:
        raise InvalidArgument(
            f"This model's maximum context length is {max_model_len} tokens, and the prompt has "
            f"{prompt_tokens}: no room is left for a completion.",
            param=prompt_param,
            code="context_length_exceeded",
        )
    if max_tokens is not None:
        if max_tokens < 1:
            raise InvalidArgument(f"max_tokens must be at least 1, got {max_tokens}", param="max_tokens")
        if max_tokens > room:
            raise InvalidArgument(
                f"This model's maximum context length is {max_model_len} tokens. The prompt has "
                f"{prompt_tokens} and max_tokens asks for {max_tokens}; reduce one of them.",
                param="max_tokens",
                code="context_length_exceeded",
            )

    return SamplingSettings(
        max_tokens=max_tokens if max_tokens is not None else room,
        temperature=1.0 if temperature is None else float(temperature),
        top_p=1.0 if top_p is None else float(top_p),
        stop=tuple(stop),
        seed=seed,
        n=1 if n is None else n,
    )
