"""Sampling parameters: OpenAI's ranges and defaults, and max_tokens against the context length."""

from __future__ import annotations

from typing import Any

import pytest

from services.common.errors import InvalidArgument
from services.inference.sampling import SamplingSettings, validate_sampling


def validate(**overrides: Any) -> SamplingSettings:
    values: dict[str, Any] = {
        "temperature": None,
        "top_p": None,
        "max_tokens": None,
        "stop": (),
        "seed": None,
        "n": None,
        "prompt_tokens": 10,
        "max_model_len": 100,
        "vocab_size": 50,
    }
    return validate_sampling(**{**values, **overrides})


def test_defaults_fill_the_context_left_by_the_prompt() -> None:
    assert validate() == SamplingSettings(max_tokens=90, temperature=1.0, top_p=1.0, stop=(), seed=None, n=1)


def test_valid_values_are_kept() -> None:
    settings = validate(temperature=0.0, top_p=0.5, max_tokens=90, stop=["\n", "END"], seed=-3, n=128)
    assert settings == SamplingSettings(
        max_tokens=90, temperature=0.0, top_p=0.5, stop=("\n", "END"), seed=-3, n=128
    )
    assert settings.greedy


def test_penalties_bias_and_logprobs_are_kept() -> None:
    settings = validate(
        frequency_penalty=-2.0, presence_penalty=2.0, logit_bias={0: -100.0, 49: 100.0, 7: 0.0}, top_logprobs=20
    )
    assert (settings.frequency_penalty, settings.presence_penalty) == (-2.0, 2.0)
    assert settings.logit_bias == {0: -100.0, 49: 100.0}, "a zero bias changes nothing and is dropped"
    assert settings.top_logprobs == 20
    assert validate().top_logprobs is None, "no logprobs unless asked for"


@pytest.mark.parametrize(
    ("overrides", "param"),
    [
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": 2.01}, "temperature"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 91}, "max_tokens"),
        ({"n": 0}, "n"),
        ({"n": 129}, "n"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"stop": ["ok", ""]}, "stop"),
        ({"seed": 2**63}, "seed"),
        ({"frequency_penalty": 2.5}, "frequency_penalty"),
        ({"presence_penalty": -2.01}, "presence_penalty"),
        ({"presence_penalty": float("nan")}, "presence_penalty"),
        ({"logit_bias": {50: 1.0}}, "logit_bias"),
        ({"logit_bias": {-1: 1.0}}, "logit_bias"),
        ({"logit_bias": {3: 100.5}}, "logit_bias"),
        ({"top_logprobs": 21}, "top_logprobs"),
        ({"top_logprobs": -1}, "top_logprobs"),
        ({"prompt_tokens": 100}, "messages"),
        ({"prompt_tokens": 100, "prompt_param": "prompt"}, "prompt"),
    ],
)
def test_out_of_range_values_name_the_field(overrides: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        validate(**overrides)
    assert raised.value.param == param


def test_a_prompt_that_fills_the_context_says_so() -> None:
    with pytest.raises(InvalidArgument) as raised:
        validate(max_tokens=95)
    assert "maximum context length is 100 tokens" in raised.value.message
    assert raised.value.code == "context_length_exceeded"

