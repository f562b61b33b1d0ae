"""Choosing each row's next token from its logits, with that row's own settings and random generator.

Rows of one batch belong to different requests, so temperature, top-p, penalties, logit
bias and the random stream are per row. Logits are processed as vLLM's sampler does, so
that both engines choose alike: in float32, ``logit_bias`` added, then the frequency
penalty (times the count of the token in the row's output so far) and the presence
penalty (once if it occurs there) subtracted; the prompt never counts, as in vLLM's
``SamplingParams``. Greedy rows (temperature 0) then take the arg-max, all at once.
Sampled rows draw from their own ``torch.Generator``: seeded from the request's ``seed``
(plus the choice index, as vLLM seeds the n choices of a request), a choice's tokens
depend on nothing but its own logits, whoever shares its batch.

Log probabilities (:func:`token_logprobs`) come from the raw logits, before any of that
processing: vLLM's default ``logprobs_mode`` (``raw_logprobs``).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from services.inference.engine import TokenLogprob

_SEED_MODULUS = 2**64  # torch.Generator.manual_seed takes unsigned 64-bit seeds


@dataclass
class RowSampler:
    """How one choice samples: temperature, top-p, random generator (None when greedy), penalties and bias."""

    temperature: float
    top_p: float
    generator: torch.Generator | None
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    # logit_bias as two tensors on the device (token ids, biases); None for no bias.
    bias: tuple[torch.Tensor, torch.Tensor] | None = None
    # Alternatives reported beside each token's log probability; None: no log probabilities.
    top_logprobs: int | None = None
    # How often each token occurs in this choice's output so far; kept only under a penalty.
    counts: torch.Tensor | None = None

    @classmethod
    def create(
        cls,
        temperature: float,
        top_p: float,
        seed: int | None,
        device: torch.device,
        *,
        frequency_penalty: float = 0.0,
        presence_penalty: float = 0.0,
        logit_bias: Mapping[int, float] | None = None,
        top_logprobs: int | None = None,
    ) -> RowSampler:
        """A sampler for one choice; an absent seed draws a fresh one."""
        bias = None
        if logit_bias:
            bias = (
                torch.tensor(list(logit_bias), dtype=torch.long, device=device),
                torch.tensor(list(logit_bias.values()), dtype=torch.float32, device=device),
            )
        generator = None
        if temperature != 0.0:
            generator = torch.Generator(device=device)
            generator.manual_seed((secrets.randbits(63) if seed is None else seed) % _SEED_MODULUS)
        return cls(temperature, top_p, generator, frequency_penalty, presence_penalty, bias, top_logprobs)

    @property
    def penalized(self) -> bool:
        return self.frequency_penalty != 0.0 or self.presence_penalty != 0.0

    @property
    def adjusts_logits(self) -> bool:
        return self.bias is not None or self.penalized

    def adjust(self, row_logits: torch.Tensor) -> None:
        """Add the logit bias and subtract the penalties, in place, in vLLM's order."""
        if self.bias is not None:
            row_logits.index_add_(0, *self.bias)
        if self.counts is not None:
            row_logits -= self.frequency_penalty * self.counts
            row_logits -= self.presence_penalty * (self.counts > 0)

    def record(self, token: int, vocab_size: int, device: torch.device) -> None:
        """Count ``token`` as part of the output (only a penalized row needs the counts)."""
        if not self.penalized:
            return
        if self.counts is None:
            self.counts = torch.zeros(vocab_size, dtype=torch.float32, device=device)
        self.counts[token] += 1


def sample_next_tokens(logits: torch.Tensor, samplers: Sequence[RowSampler]) -> list[int]:
    """The next token of each row of ``logits`` (rows x vocabulary), as its sampler decides.

    Each sampler records its token: the penalties count it from the next step on.
    ``logits`` itself is left as it is (log probabilities are read from it).
    """
    processed = _processed(logits, samplers)
    greedy_tokens = processed.argmax(dim=-1).tolist()
    tokens = [
        greedy_tokens[row] if sampler.generator is None else _sample(processed[row], sampler)
        for row, sampler in enumerate(samplers)
    ]
    for sampler, token in zip(samplers, tokens, strict=True):
        sampler.record(token, logits.shape[-1], logits.device)
    return tokens


def token_logprobs(
    logits: torch.Tensor, tokens: Sequence[int], samplers: Sequence[RowSampler]
) -> list[TokenLogprob | None]:
    """Each row's chosen token's raw log probability and its top alternatives; None where not asked for."""
    result: list[TokenLogprob | None] = [None] * len(samplers)
    rows = [row for row, sampler in enumerate(samplers) if sampler.top_logprobs is not None]
    if not rows:
        return result
    logprobs = torch.log_softmax(logits[rows].float(), dim=-1)
    chosen_ids = torch.tensor([tokens[row] for row in rows], device=logprobs.device)
    chosen = logprobs.gather(-1, chosen_ids.unsqueeze(-1)).squeeze(-1).tolist()
    most = max(samplers[row].top_logprobs or 0 for row in rows)
    top_values, top_ids = logprobs.topk(most, dim=-1) if most else (logprobs[:, :0], logprobs[:, :0])
    top_values, top_ids = top_values.tolist(), top_ids.long().tolist()
    for position, row in enumerate(rows):
        wanted = samplers[row].top_logprobs or 0
        top = tuple(zip(top_ids[position][:wanted], top_values[position][:wanted], strict=True))
        result[row] = TokenLogprob(token_id=tokens[row], logprob=chosen[position], top=top)
    return result


def _processed(logits: torch.Tensor, samplers: Sequence[RowSampler]) -> torch.Tensor:
    """``logits``, or a float32 copy with each adjusting row's bias and penalties applied."""
    rows = [row for row, sampler in enumerate(samplers) if sampler.adjusts_logits]
    if not rows:
        return logits
    processed = logits.to(torch.float32, copy=True)
    for row in rows:
        samplers[row].adjust(processed[row])
    return processed


def _sample(row_logits: torch.Tensor, sampler: RowSampler) -> int:
    probabilities = torch.softmax(row_logits.float() / sampler.temperature, dim=-1)
    if sampler.top_p < 1.0:
        probabilities = _nucleus(probabilities, sampler.top_p)
    return int(torch.multinomial(probabilities, 1, generator=sampler.generator).item())


def _nucleus(probabilities: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the most likely tokens whose probabilities first add up to ``top_p``; zero the rest."""
    sorted_probabilities, order = probabilities.sort(descending=True)
    # A token is kept if the mass before it is still short of top_p (so the top token always is).
    mass_before = sorted_probabilities.cumsum(dim=-1) - sorted_probabilities
    sorted_probabilities[mass_before >= top_p] = 0.0
    return torch.zeros_like(probabilities).scatter_(-1, order, sorted_probabilities)
