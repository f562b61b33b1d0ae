"""Inference settings refuse combinations the engines cannot run."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.inference.config import InferenceSettings


def test_defaults_work_on_a_laptop(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = InferenceSettings(data_dir=tmp_path)
    assert settings.inference_base_model == "tailor-tiny" and settings.inference_engine == "auto"
    assert settings.adapter_cache_dir == tmp_path / "adapter-cache"


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"max_lora_rank": 24}, "a rank vLLM accepts"),
        ({"inference_max_loras": 8, "inference_max_cpu_loras": 4}, "at least inference_max_loras"),
        ({"inference_base_model": "llama-70b"}, "is not configured"),
        ({"inference_engine": "tgi"}, "inference_engine"),
    ],
)
def test_impossible_settings_are_refused(overrides: dict[str, object], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        InferenceSettings(**overrides)
