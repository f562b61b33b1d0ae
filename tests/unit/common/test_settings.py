"""Settings come from TAILOR_* environment variables, with laptop defaults and clear refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from services.common.settings import CommonSettings
from services.dataset.config import DatasetSettings


def test_defaults_work_on_a_laptop(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(__import__("os").environ):
        if name.startswith("TAILOR_"):
            monkeypatch.delenv(name)
    settings = CommonSettings()
    assert settings.object_store_endpoint == ""  # filesystem object store
    assert settings.objects_dir == Path(".tailor") / "objects"
    assert list(settings.base_models) == ["tailor-tiny"]
    assert settings.dataset_addr.startswith("127.0.0.1:")


def test_environment_overrides_with_the_prefix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TAILOR_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("TAILOR_DATASET_LISTEN", "0.0.0.0:6000")
    monkeypatch.setenv("TAILOR_OBJECT_STORE_SECRET_KEY", "s3cr3t")
    settings = DatasetSettings()
    assert settings.data_dir == tmp_path
    assert settings.dataset_listen == "0.0.0.0:6000"
    assert settings.object_store_secret_key.get_secret_value() == "s3cr3t"
    assert "s3cr3t" not in repr(settings)  # secrets never reach logs through repr


def test_bad_values_are_refused_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAILOR_OBJECT_STORE_PART_SIZE_MIB", "1")
    with pytest.raises(ValidationError, match="object_store_part_size_mib"):
        CommonSettings()


def test_base_model_names_cannot_break_model_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAILOR_BASE_MODELS", '{"bad:name": {"source": "builtin:tailor-tiny"}}')
    with pytest.raises(ValidationError, match="no ':'"):
        CommonSettings()
    monkeypatch.setenv("TAILOR_BASE_MODELS", '{"Qwen/Qwen2.5-0.5B": {"source": "Qwen/Qwen2.5-0.5B"}}')
    assert list(CommonSettings().base_models) == ["Qwen/Qwen2.5-0.5B"]
