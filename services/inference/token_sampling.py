"""Choosing each row's next token from its logits, with that row's own settings and random generator.

Rows of one batch belong to different requests, so temperature, top-p and the random
stream are per row. Greedy rows (temperature 0) take the arg-max, all at once. Sampled
rows draw from their own ``torch.Generator``: seeded from the request's ``seed`` (plus
the choice index, as vLLM seeds the n choices of a request), a choice's tokens depend
on nothing but its own logits, whoever shares its batch.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

import torch

_SEED_MODULUS = 2**64  # torch.Generator.manual_seed takes unsigned 64-bit seeds


@dataclass
class RowSampler:
    """How one choice samples: its temperature, top-p and random generator (None when greedy)."""

    temperature: float
    top_p: float
    generator: torch.Generator | None

    @classmethod
    def create(cls, temperature: float, top_p: float, seed: int | None, device: torch.device) -> RowSampler:
        """A sampler for one choice; an absent seed draws a fresh one."""
        if temperature == 0.0:
            return cls(temperature, top_p, None)
        generator = torch.Generator(device=device)
        generator.manual_seed((secrets.randbits(63) if seed is None else seed) % _SEED_MODULUS)
        return cls(temperature, top_p, generator)


def sample_next_tokens(logits: torch.Tensor, samplers: Sequence[RowSampler]) -> list[int]:
    """The next token of each row of ``logits`` (rows x vocabulary), as its sampler decides."""
    greedy_tokens = logits.argmax(dim=-1).tolist()
    return [
        greedy_tokens[row] if sampler.generator is None else _sample(logits[row], sampler)
        for row, sampler in enumerate(samplers)
    ]


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
