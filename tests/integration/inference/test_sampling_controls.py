"""Penalties, logit_bias and log probabilities on each engine, against a plain transformers loop.

The reference decodes greedily with one full forward pass per token (no cache, no batch) and
processes the logits as vLLM's sampler defines it: float32, ``logit_bias`` added, then
``frequency_penalty`` times each token's count in the output so far and ``presence_penalty``
once per token already output subtracted (the prompt never counts); log probabilities are
the raw log-softmax of the model's logits, before any of that. Each engine must give the
reference's text, token count and log probabilities, so hf and vLLM agree with each other.

tailor-tiny's greedy replies repeat one token over and over ("\\n\\n\\n..." then
"condcondcond..."), which is what the penalties exist to break.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import torch

from services.common.grpc_client import rpc_error
from tests.integration.inference.adapter_factory import chat_prompt_ids
from tests.integration.inference.conftest import Replica, chat_request, complete, expect_error

pytestmark = pytest.mark.asyncio(loop_scope="session")

MAX_TOKENS = 24
# The engines batch (padded) and the reference does not: float32 sums in another order.
LOGPROB_TOLERANCE = 1e-4


@dataclass(frozen=True)
class Step:
    """One generated token of the reference: its id, raw log probability and the top alternatives."""

    token_id: int
    logprob: float
    top: list[tuple[int, float]]


@functools.cache
def _model_and_tokenizer(base_dir: Path):  # type: ignore[no-untyped-def]
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(base_dir).eval(), AutoTokenizer.from_pretrained(base_dir)


def reference(
    base_dir: Path,
    message: str,
    *,
    frequency_penalty: float = 0.0,
    presence_penalty: float = 0.0,
    logit_bias: dict[int, float] | None = None,
    top: int = 0,
    max_tokens: int = MAX_TOKENS,
) -> tuple[str, list[Step]]:
    """The greedy reply's text (special tokens skipped) and its steps, an end of sequence included."""
    model, tokenizer = _model_and_tokenizer(base_dir)
    sequence = chat_prompt_ids(tokenizer, message)
    counts = torch.zeros(model.config.vocab_size)
    steps: list[Step] = []
    with torch.inference_mode():
        for _ in range(max_tokens):
            logits = model(torch.tensor([sequence])).logits[0, -1].float()
            logprobs = torch.log_softmax(logits, dim=-1)
            processed = logits.clone()
            for token_id, bias in (logit_bias or {}).items():
                processed[token_id] += bias
            processed -= frequency_penalty * counts
            processed -= presence_penalty * (counts > 0)
            token = int(processed.argmax())
            values, ids = logprobs.topk(top) if top else (logprobs[:0], logprobs[:0])
            alternatives = list(zip(ids.tolist(), values.tolist(), strict=True))
            steps.append(Step(token, float(logprobs[token]), alternatives))
            counts[token] += 1
            sequence.append(token)
            if token == tokenizer.eos_token_id:
                break
    return tokenizer.decode([s.token_id for s in steps], skip_special_tokens=True), steps


@pytest.mark.parametrize(
    ("frequency_penalty", "presence_penalty"), [(2.0, 0.0), (0.0, 2.0), (2.0, 2.0), (-1.0, 0.5)]
)
async def test_penalties_give_the_reference_reply(
    replica: Replica, tailor_tiny_dir: Path, frequency_penalty: float, presence_penalty: float
) -> None:
    plain = await complete(replica.stub, chat_request("hello", max_tokens=MAX_TOKENS))
    penalized = await complete(
        replica.stub,
        chat_request(
            "hello",
            max_tokens=MAX_TOKENS,
            frequency_penalty=frequency_penalty,
            presence_penalty=presence_penalty,
        ),
    )
    expected, steps = reference(
        tailor_tiny_dir, "hello", frequency_penalty=frequency_penalty, presence_penalty=presence_penalty
    )
    assert (penalized.text, penalized.usage.completion_tokens) == (expected, len(steps))
    if frequency_penalty > 0 or presence_penalty > 1.0:
        assert penalized.text != plain.text, "the penalty changed nothing"


async def test_a_large_frequency_penalty_breaks_the_repetition(replica: Replica) -> None:
    plain = await complete(replica.stub, chat_request("hello", max_tokens=MAX_TOKENS, top_logprobs=0))
    penalized = await complete(
        replica.stub, chat_request("hello", max_tokens=MAX_TOKENS, frequency_penalty=2.0, top_logprobs=0)
    )
    plain_tokens = [t.token for t in plain.logprobs[0]]
    penalized_tokens = [t.token for t in penalized.logprobs[0]]
    assert len(set(plain_tokens)) <= 2, plain_tokens
    assert len(set(penalized_tokens)) >= 8, penalized_tokens
    runs_of_four = [i for i in range(len(penalized_tokens) - 3) if len(set(penalized_tokens[i : i + 4])) == 1]
    assert not runs_of_four, "no token four times in a row under a penalty of 2 per use"


async def test_a_logit_bias_forces_or_bans_a_token(replica: Replica, tailor_tiny_dir: Path) -> None:
    _, tokenizer = _model_and_tokenizer(tailor_tiny_dir)
    orders = tokenizer.convert_tokens_to_ids("Ġorders")
    forced = await complete(
        replica.stub, chat_request("hello", max_tokens=6, logit_bias={orders: 100.0}, temperature=1.0, seed=3)
    )
    assert forced.text == " orders" * 6, "a +100 bias wins even when sampling"

    plain_first = reference(tailor_tiny_dir, "hello")[1][0].token_id
    banned = await complete(
        replica.stub, chat_request("hello", max_tokens=MAX_TOKENS, logit_bias={plain_first: -100.0})
    )
    expected, steps = reference(tailor_tiny_dir, "hello", logit_bias={plain_first: -100.0})
    assert (banned.text, banned.usage.completion_tokens) == (expected, len(steps))
    assert plain_first not in [step.token_id for step in steps]


async def test_logprobs_are_the_models_own_at_every_step(replica: Replica, tailor_tiny_dir: Path) -> None:
    # With a penalty the chosen tokens change, but the log probabilities stay the model's raw ones.
    completion = await complete(
        replica.stub, chat_request("hello", max_tokens=12, presence_penalty=2.0, top_logprobs=5)
    )
    expected_text, steps = reference(tailor_tiny_dir, "hello", presence_penalty=2.0, top=5, max_tokens=12)
    _, tokenizer = _model_and_tokenizer(tailor_tiny_dir)
    assert completion.text == expected_text
    got = completion.logprobs[0]
    assert [t.token for t in got] == [tokenizer.decode([s.token_id]) for s in steps]
    for position, (token, step) in enumerate(zip(got, steps, strict=True)):
        assert token.logprob == pytest.approx(step.logprob, abs=LOGPROB_TOLERANCE), position
        assert [alt.token for alt in token.top_logprobs] == [tokenizer.decode([i]) for i, _ in step.top]
        assert [alt.logprob for alt in token.top_logprobs] == pytest.approx(
            [value for _, value in step.top], abs=LOGPROB_TOLERANCE
        )
    unasked = await complete(replica.stub, chat_request("hello", max_tokens=3))
    assert unasked.logprobs[0] == [], "no log probabilities unless asked for"


async def test_bad_penalties_biases_and_logprobs_are_invalid_arguments(replica: Replica) -> None:
    vocab_size = replica.runtime.engine.vocab_size
    cases = [
        (chat_request("hi", frequency_penalty=2.5), "frequency_penalty"),
        (chat_request("hi", presence_penalty=-3.0), "presence_penalty"),
        (chat_request("hi", logit_bias={vocab_size: 1.0}), "logit_bias"),
        (chat_request("hi", logit_bias={5: 101.0}), "logit_bias"),
        (chat_request("hi", top_logprobs=21), "top_logprobs"),
    ]
    for request, param in cases:
        error = await expect_error(complete(replica.stub, request))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (param, error.details())
        assert rpc_error(error).param == param
