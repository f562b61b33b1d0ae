"""Token counting where the built-in model would have to be built without torch: a clear refusal."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.common.errors import FailedPrecondition
from services.common.settings import CommonSettings
from services.common.training_format import ExampleFormat
from services.dataset import statistics
from services.dataset.statistics import TokenCounter


async def no_content() -> AsyncIterator[bytes]:
    yield b""


async def test_an_unbuilt_builtin_model_without_torch_is_a_failed_precondition(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(statistics, "torch_available", lambda: False)
    counter = TokenCounter(CommonSettings(data_dir=tmp_path))
    with pytest.raises(FailedPrecondition) as caught:
        await counter.count("tailor-tiny", ExampleFormat.CHAT, no_content())
    assert "needs torch" in caught.value.message and caught.value.param == "base_model"
    assert not (tmp_path / "models").exists(), "nothing was built"
