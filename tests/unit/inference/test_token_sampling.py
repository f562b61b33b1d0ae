"""Next-token choice per row: greedy arg-max, seeded sampling independent of the batch, nucleus cut-off,
penalties and logit bias as vLLM applies them, and raw log probabilities."""

from __future__ import annotations

import torch

import pytest

from services.inference.token_sampling import RowSampler, sample_next_tokens, token_logprobs

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


def test_a_frequency_penalty_grows_with_each_repeat_and_presence_counts_once() -> None:
    # Token 0 leads token 1 by 1.5: one use of token 0 costs 1.0 of frequency penalty, two cost 2.0.
    logits = torch.tensor([[2.5, 1.0, 0.0]])
    frequency = RowSampler.create(0.0, 1.0, None, CPU, frequency_penalty=1.0)
    assert [sample_next_tokens(logits, [frequency])[0] for _ in range(3)] == [0, 0, 1]
    presence = RowSampler.create(0.0, 1.0, None, CPU, presence_penalty=1.0)
    assert [sample_next_tokens(logits, [presence])[0] for _ in range(3)] == [0, 0, 0], "1.0 once is not enough"
    presence = RowSampler.create(0.0, 1.0, None, CPU, presence_penalty=2.0)
    assert [sample_next_tokens(logits, [presence])[0] for _ in range(3)] == [0, 1, 0], "both used: 0.5 > -1.0"


def test_penalties_count_only_the_rows_own_output() -> None:
    logits = torch.tensor([[2.5, 1.0, 0.0], [2.5, 1.0, 0.0]])
    penalized = RowSampler.create(0.0, 1.0, None, CPU, presence_penalty=2.0)
    plain = RowSampler.create(0.0, 1.0, None, CPU)
    assert sample_next_tokens(logits, [penalized, plain]) == [0, 0]
    assert sample_next_tokens(logits, [penalized, plain]) == [1, 0]
    assert logits[0, 0] == 2.5, "the logits handed in are left as they are"


@pytest.mark.parametrize(("bias", "expected"), [(100.0, 2), (-100.0, 1)])
def test_a_logit_bias_forces_or_bans_a_token(bias: float, expected: int) -> None:
    logits = torch.tensor([[2.5, 1.0, 0.0]])
    token = 2 if bias > 0 else 0
    sampler = RowSampler.create(0.0, 1.0, None, CPU, logit_bias={token: bias})
    assert sample_next_tokens(logits, [sampler]) == [expected]
    sampled = RowSampler.create(1.0, 1.0, 5, CPU, logit_bias={token: bias})
    draws = {sample_next_tokens(logits, [sampled])[0] for _ in range(50)}
    assert (draws == {2}) if bias > 0 else (0 not in draws)


def test_logprobs_are_the_raw_log_softmax_with_the_best_alternatives_first() -> None:
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0], [0.0, 0.0, 3.0, 0.0]])
    asking = RowSampler.create(0.0, 1.0, None, CPU, top_logprobs=2, logit_bias={3: 100.0})
    silent = RowSampler.create(0.0, 1.0, None, CPU)
    tokens = sample_next_tokens(logits, [asking, silent])
    assert tokens == [3, 2]
    first, second = token_logprobs(logits, tokens, [asking, silent])
    expected = torch.log_softmax(logits[0], dim=-1)
    assert second is None
    assert first is not None and first.token_id == 3
    assert first.logprob == pytest.approx(float(expected[3])), "before the bias: the model's own"
    assert [token for token, _ in first.top] == [0, 1]
    assert [value for _, value in first.top] == pytest.approx([float(expected[0]), float(expected[1])])
