"""The base model registry: configuration through the environment, and name resolution."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
from pydantic import ValidationError
from pydantic_settings import SettingsError

from services.common import tailor_tiny
from services.common.base_models import BaseModelSpec, resolve_base_model
from services.common.errors import FailedPrecondition, InvalidArgument
from services.common.settings import CommonSettings

REPO_ROOT = Path(__file__).resolve().parents[3]


def settings_with(tmp_path: Path, base_models: dict[str, BaseModelSpec] | None = None) -> CommonSettings:
    if base_models is None:
        return CommonSettings(data_dir=tmp_path)
    return CommonSettings(data_dir=tmp_path, base_models=base_models)


def test_default_registry_is_the_builtin_tailor_tiny(tmp_path: Path) -> None:
    spec = settings_with(tmp_path).base_models["tailor-tiny"]
    assert spec.source == "builtin:tailor-tiny"
    assert spec.is_builtin


def test_builtin_resolves_to_a_model_built_under_models_dir(tmp_path: Path) -> None:
    from transformers import AutoConfig

    settings = settings_with(tmp_path)
    resolved = resolve_base_model("tailor-tiny", settings)

    expected_dir = tailor_tiny.model_dir(settings.models_dir)
    assert resolved.location == str(expected_dir.absolute())
    assert resolved.is_local and resolved.revision is None
    assert resolved.spec == settings.base_models["tailor-tiny"]
    assert tailor_tiny.is_built(expected_dir)
    assert AutoConfig.from_pretrained(resolved.location).model_type == "llama"


def test_builtin_without_building_only_names_the_directory(tmp_path: Path) -> None:
    settings = settings_with(tmp_path)
    resolved = resolve_base_model("tailor-tiny", settings, build=False)
    assert resolved.location == str(tailor_tiny.model_dir(settings.models_dir).absolute())
    assert not settings.models_dir.exists()


def test_local_directory_resolves_to_its_absolute_path(tmp_path: Path) -> None:
    model_dir = tmp_path / "my-model"
    model_dir.mkdir()
    settings = settings_with(tmp_path, {"mine": BaseModelSpec(source=str(model_dir))})
    resolved = resolve_base_model("mine", settings)
    assert resolved.location == str(model_dir) and resolved.is_local


def test_missing_local_directory_is_a_failed_precondition(tmp_path: Path) -> None:
    settings = settings_with(tmp_path, {"gone": BaseModelSpec(source=str(tmp_path / "nowhere"))})
    with pytest.raises(FailedPrecondition):
        resolve_base_model("gone", settings)


def test_hub_id_passes_through_with_its_revision(tmp_path: Path) -> None:
    spec = BaseModelSpec(
        source="Qwen/Qwen2.5-0.5B-Instruct", revision="7ae557604adf67be50417f59c2c2f167def9a775"
    )
    resolved = resolve_base_model("qwen", settings_with(tmp_path, {"qwen": spec}))
    assert resolved.location == "Qwen/Qwen2.5-0.5B-Instruct"
    assert resolved.revision == spec.revision
    assert not resolved.is_local


def test_unknown_name_is_invalid_and_lists_the_configured_models(tmp_path: Path) -> None:
    settings = settings_with(
        tmp_path,
        {
            "tailor-tiny": BaseModelSpec(source="builtin:tailor-tiny"),
            "qwen": BaseModelSpec(source="Qwen/Qwen2.5-0.5B-Instruct"),
        },
    )
    with pytest.raises(InvalidArgument) as raised:
        resolve_base_model("gpt-5", settings)
    assert raised.value.param == "model"
    assert raised.value.code == "model_not_found"
    assert "gpt-5" in raised.value.message
    assert "qwen, tailor-tiny" in raised.value.message


def test_environment_json_configures_the_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "TAILOR_BASE_MODELS",
        json.dumps(
            {
                "tailor-tiny": {"source": "builtin:tailor-tiny", "lora_rank": 8},
                "qwen": {
                    "source": "Qwen/Qwen2.5-0.5B-Instruct",
                    "revision": "main",
                    "lora_learning_rate": 1e-4,
                    "max_seq_length": 4096,
                },
            }
        ),
    )
    base_models = CommonSettings().base_models
    assert set(base_models) == {"tailor-tiny", "qwen"}
    assert base_models["qwen"] == BaseModelSpec(
        source="Qwen/Qwen2.5-0.5B-Instruct", revision="main", lora_learning_rate=1e-4, max_seq_length=4096
    )
    assert base_models["tailor-tiny"].lora_rank == 8


@pytest.mark.parametrize(
    ("spec", "complaint"),
    [
        ({"revision": "main"}, "source"),
        ({"source": "builtin:tailor-huge"}, "unknown built-in model"),
        ({"source": "Qwen/Qwen2.5-0.5B", "lora_rank": 12}, "lora_rank must be one vLLM accepts"),
        ({"source": "Qwen/Qwen2.5-0.5B", "learning_rate": 0.1}, "Extra inputs are not permitted"),
        ({"source": "Qwen/Qwen2.5-0.5B", "max_seq_length": 0}, "greater than 0"),
        ({"source": "builtin:tailor-tiny", "revision": "main"}, "revision applies to Hugging Face ids"),
    ],
)
def test_invalid_spec_in_the_environment_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, spec: dict[str, object], complaint: str
) -> None:
    monkeypatch.setenv("TAILOR_BASE_MODELS", json.dumps({"broken": spec}))
    with pytest.raises(ValidationError) as raised:
        CommonSettings()
    message = str(raised.value)
    assert "base_models.broken" in message
    assert complaint in message


def test_invalid_json_in_the_environment_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAILOR_BASE_MODELS", "{not json")
    with pytest.raises(SettingsError, match="base_models"):
        CommonSettings()


def test_registry_is_importable_without_torch() -> None:
    code = (
        "import sys, services.common.base_models, services.common.settings; "
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True)
