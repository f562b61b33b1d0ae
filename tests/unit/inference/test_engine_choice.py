"""`auto` picks vLLM exactly when it can run: installed, and a CUDA GPU present."""

from __future__ import annotations

import pytest

from services.inference.engine import choose_engine_kind


@pytest.mark.parametrize(
    ("setting", "vllm_installed", "cuda_available", "expected"),
    [
        ("auto", True, True, "vllm"),
        ("auto", True, False, "hf"),
        ("auto", False, True, "hf"),
        ("auto", False, False, "hf"),
        ("hf", True, True, "hf"),
        ("vllm", False, False, "vllm"),
    ],
)
def test_engine_choice(setting: str, vllm_installed: bool, cuda_available: bool, expected: str) -> None:
    assert (
        choose_engine_kind(setting, vllm_installed=vllm_installed, cuda_available=cuda_available) == expected
    )


def test_an_unknown_engine_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown engine"):
        choose_engine_kind("tgi", vllm_installed=True, cuda_available=True)
