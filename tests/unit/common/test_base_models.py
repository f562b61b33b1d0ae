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
from services.common.base_models import (
    BaseModelSpec,
    check_base_model_available,
    missing_from_hub_cache,
    resolve_base_model,
)
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
    assert resolved.spec.source == settings.base_models["tailor-tiny"].source
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


# The family and the effective defaults, read from config.json.


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty hub cache at tmp_path/hf-home, offline, as this process's huggingface_hub sees it."""
    from huggingface_hub import constants

    hf_home = tmp_path / "hf-home"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hf_home / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return hf_home


def write_config(directory: Path, **config: object) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config))
    return directory


def test_the_builtin_tailor_tiny_is_a_llama_with_its_own_entry_values(tmp_path: Path) -> None:
    resolved = resolve_base_model("tailor-tiny", settings_with(tmp_path))
    assert resolved.model_type == "llama" and resolved.family.model_type == "llama"
    assert resolved.context_length == 2048
    assert (resolved.lora_learning_rate, resolved.lora_rank, resolved.max_seq_length) == (2e-3, 8, 512)
    assert resolved.tool_call_format == "hermes"  # its ChatML template, not Llama 3's JSON
    assert resolved.lora_target_modules == ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@pytest.mark.parametrize("name", ["tiny-qwen2.5", "tiny-gemma2"])
def test_a_plain_builtin_entry_takes_the_builtin_models_defaults_then_its_familys(tmp_path: Path, name: str) -> None:
    # Only a source, as a user writes it: the tiny model's own training defaults, its family's
    # tool-call format and target modules; without building it (the trainer on Kubernetes).
    settings = settings_with(tmp_path, {name: BaseModelSpec(source=f"builtin:{name}")})
    resolved = resolve_base_model(name, settings, build=False)
    assert (resolved.lora_learning_rate, resolved.lora_rank, resolved.max_seq_length) == (2e-3, 8, 512)
    assert resolved.tool_call_format == resolved.family.tool_call_format is not None
    assert resolved.family.model_type == {"tiny-qwen2.5": "qwen2", "tiny-gemma2": "gemma2"}[name]


def test_an_entrys_own_values_win_over_the_builtin_models(tmp_path: Path) -> None:
    entry = BaseModelSpec(source="builtin:tailor-tiny", lora_learning_rate=5e-4, tool_call_format="llama3_json")
    resolved = resolve_base_model("tailor-tiny", settings_with(tmp_path, {"tailor-tiny": entry}), build=False)
    assert (resolved.lora_learning_rate, resolved.lora_rank) == (5e-4, 8)
    assert resolved.tool_call_format == "llama3_json"


def test_a_local_directory_takes_its_familys_defaults(tmp_path: Path) -> None:
    directory = write_config(tmp_path / "phi", model_type="phi3", max_position_embeddings=4096)
    resolved = resolve_base_model("phi", settings_with(tmp_path, {"phi": BaseModelSpec(source=str(directory))}))
    assert resolved.family.model_type == "phi3"
    assert resolved.lora_target_modules == ("qkv_proj", "o_proj", "gate_up_proj", "down_proj")
    assert (resolved.lora_learning_rate, resolved.lora_rank, resolved.max_seq_length) == (2e-4, 16, 2048)
    assert resolved.tool_call_format == "phi4"


def test_a_hub_id_reads_its_config_from_the_local_cache(tmp_path: Path, hub_cache: Path) -> None:
    from tests.support.hub_cache import populate_hub_cache

    model = write_config(tmp_path / "model", model_type="qwen2", max_position_embeddings=32768)
    populate_hub_cache(model, "Qwen/Qwen2.5-0.5B-Instruct", hub_cache)
    settings = settings_with(tmp_path, {"qwen": BaseModelSpec(source="Qwen/Qwen2.5-0.5B-Instruct")})

    resolved = resolve_base_model("qwen", settings)

    assert (resolved.model_type, resolved.context_length) == ("qwen2", 32768)
    assert resolved.tool_call_format == "hermes" and resolved.lora_rank == 16
    check_base_model_available(resolved)  # cached: nothing to refuse


def test_an_uncached_hub_id_offline_is_refused_naming_model(tmp_path: Path, hub_cache: Path) -> None:
    spec = BaseModelSpec(source="Org/Not-Cached", family="mistral")
    resolved = resolve_base_model("absent", settings_with(tmp_path, {"absent": spec}))
    assert resolved.config.model_type is None
    assert resolved.family.model_type == "mistral"  # the entry's family stands in until it is read
    with pytest.raises(InvalidArgument) as refused:
        check_base_model_available(resolved)
    assert (refused.value.param, refused.value.code) == ("model", "model_not_available")
    assert "Org/Not-Cached" in refused.value.message and "HF_HUB_OFFLINE" in refused.value.message


def test_an_uncached_hub_id_online_is_allowed(
    tmp_path: Path, hub_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    spec = BaseModelSpec(source="Org/Not-Cached")
    resolved = resolve_base_model("absent", settings_with(tmp_path, {"absent": spec}))
    assert missing_from_hub_cache(resolved) is None
    check_base_model_available(resolved)  # downloaded on first use


def test_the_hub_cache_helper_loads_in_transformers_offline(tmp_path: Path) -> None:
    from tests.support.hub_cache import populate_hub_cache

    model_dir = tailor_tiny.ensure_tailor_tiny(tmp_path / "models")
    hf_home = tmp_path / "hf-home"
    snapshot = populate_hub_cache(model_dir, "Org/Name", hf_home)
    assert (hf_home / "hub" / "models--Org--Name" / "refs" / "main").read_text() == snapshot.name
    assert (snapshot / "config.json").is_symlink()
    code = (
        "from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer; "
        "AutoTokenizer.from_pretrained('Org/Name'); "
        "m = AutoModelForCausalLM.from_pretrained('Org/Name'); "
        "assert m.config.model_type == 'llama'"
    )
    environment = {**os.environ, "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"}
    environment.pop("HF_HUB_CACHE", None)
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=environment, check=True, timeout=120)
