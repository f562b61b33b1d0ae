"""Next-token choice per row: greedy arg-max, seeded sampling independent of the batch, nucleus cut-off."""

from __future__ import annotations

import torch

from services.inference.token_sampling import RowSampler, sample_next_tokens

CPU = torch.device("cpu")


def test_greedy_rows_take_the_most_likely_token() -> None:
    logits = torch.tensor([[0.1, 3.0, 0.2], [5.0, 1.0, 0.0]])
    greedy = RowSampler.create(0.0, 1.0, None, CPU)
    assert sample_next_tokens(logits, [greedy, greedy]) == [1, 0]


def test_a_seeded_row_draws_the_same_tokens_whatever_shares_its_batch() -> None:
    torch.manual_seed(0)
    logits = torch.randn(3, 50)

    def draws(rows: list[int]) -> list[int]:
        samplers = [RowSampler.create(1.0, 1.0, 7 if r == 0 else None, CPU) for r in rows]
        return [sample_next_tokens(logits[rows], samplers)[0] for _ in range(10)]

    assert draws([0]) == draws([0, 1, 2])


def test_top_p_only_draws_from_the_nucleus() -> None:
    probabilities = torch.tensor([0.5, 0.3, 0.15, 0.05])
    logits = probabilities.log().unsqueeze(0)
    sampler = RowSampler.create(1.0, 0.7, 123, CPU)
    drawn = {sample_next_tokens(logits, [sampler])[0] for _ in range(200)}
    assert drawn == {0, 1}, "0.5 + 0.3 reaches 0.7; the tail is cut"


def test_unseeded_rows_differ() -> None:
    logits = torch.zeros(1, 1000)
    draws = {sample_next_tokens(logits, [RowSampler.create(1.0, 1.0, None, CPU)])[0] for _ in range(10)}
    assert len(draws) > 1
