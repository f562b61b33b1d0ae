"""`auto` picks vLLM exactly when it can run here: installed, and its platform (CUDA or the CPU build) works."""

from __future__ import annotations

import pytest

from services.inference.engine import choose_engine_kind


@pytest.mark.parametrize(
    ("setting", "vllm_usable", "expected"),
    [
        ("auto", True, "vllm"),
        ("auto", False, "hf"),
        ("hf", True, "hf"),
        ("vllm", False, "vllm"),
    ],
)
def test_engine_choice(setting: str, vllm_usable: bool, expected: str) -> None:
    assert choose_engine_kind(setting, vllm_usable=vllm_usable) == expected


def test_an_unknown_engine_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown engine"):
        choose_engine_kind("tgi", vllm_usable=True)
