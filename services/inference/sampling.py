"""Sampling parameters: OpenAI's ranges, checked once, before a request reaches an engine.

A value out of range is INVALID_ARGUMENT naming the field as OpenAI does (``temperature``,
``top_p``, ``max_tokens``, ``stop``, ``n``, ``frequency_penalty``, ``presence_penalty``,
``logit_bias``, ``top_logprobs``), so the gateway can put it in the error's ``param``.
``logit_bias`` keys must be token ids of the base model's vocabulary, as vLLM requires
(its vocabulary size is the model's, the width of its logits). ``max_tokens`` is resolved here against the context length: absent, it is
whatever room the prompt leaves; present, prompt plus completion must fit, as vLLM and
OpenAI require.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from services.common.errors import InvalidArgument

MAX_TEMPERATURE = 2.0
MAX_STOP_SEQUENCES = 4
MAX_CHOICES = 128
# torch generators take seeds modulo 2**64; vLLM takes any int. Keep to int64 as the proto does.
SEED_RANGE = (-(2**63), 2**63 - 1)
MAX_PENALTY = 2.0  # OpenAI's and vLLM's range for both penalties: [-2, 2]
MAX_LOGIT_BIAS = 100.0  # OpenAI's range: [-100, 100]
MAX_TOP_LOGPROBS = 20  # OpenAI chat's top_logprobs limit, and vLLM's default max_logprobs


@dataclass(frozen=True)
class SamplingSettings:
    """Validated sampling parameters with every default applied."""

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    n: int = 1
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    # Token id -> bias added to its logit.
    logit_bias: Mapping[int, float] = field(default_factory=dict)
    # Alternatives to return beside each generated token's log probability; None: no logprobs.
    top_logprobs: int | None = None

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
    frequency_penalty: float | None = None,
    presence_penalty: float | None = None,
    logit_bias: Mapping[int, float] | None = None,
    top_logprobs: int | None = None,
    vocab_size: int | None = None,
) -> SamplingSettings:
    """Check the requested parameters and fill in defaults; InvalidArgument names the first bad field.

    ``prompt_param`` names the input (``messages`` or ``prompt``) in the error raised when the
    prompt alone leaves no room for a completion. ``vocab_size`` bounds ``logit_bias``'s token
    ids (required when a bias is given).
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

    for name, penalty in (("frequency_penalty", frequency_penalty), ("presence_penalty", presence_penalty)):
        if penalty is not None and not -MAX_PENALTY <= penalty <= MAX_PENALTY:
            raise InvalidArgument(
                f"{name} must be between -{MAX_PENALTY:g} and {MAX_PENALTY:g}, got {penalty:g}", param=name
            )
    bias = _checked_logit_bias(logit_bias or {}, vocab_size)
    if top_logprobs is not None and not 0 <= top_logprobs <= MAX_TOP_LOGPROBS:
        raise InvalidArgument(
            f"top_logprobs must be between 0 and {MAX_TOP_LOGPROBS}, got {top_logprobs}", param="top_logprobs"
        )

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
        frequency_penalty=float(frequency_penalty or 0.0),
        presence_penalty=float(presence_penalty or 0.0),
        logit_bias=bias,
        top_logprobs=top_logprobs,
    )


def _checked_logit_bias(logit_bias: Mapping[int, float], vocab_size: int | None) -> dict[int, float]:
    """``logit_bias`` with every id in the vocabulary and every bias in range; zero biases dropped."""
    if logit_bias and vocab_size is None:
        raise ValueError("validating logit_bias needs the vocabulary size")
    for token_id, bias in logit_bias.items():
        if not 0 <= token_id < (vocab_size or 0):
            raise InvalidArgument(
                f"logit_bias keys must be token ids of the model's vocabulary (0 to {(vocab_size or 0) - 1}); "
                f"{token_id} is not one",
                param="logit_bias",
            )
        if not -MAX_LOGIT_BIAS <= bias <= MAX_LOGIT_BIAS:
            raise InvalidArgument(
                f"logit_bias values must be between -{MAX_LOGIT_BIAS:g} and {MAX_LOGIT_BIAS:g}, "
                f"got {bias:g} for token {token_id}",
                param="logit_bias",
            )
    return {token_id: float(bias) for token_id, bias in logit_bias.items() if bias}
