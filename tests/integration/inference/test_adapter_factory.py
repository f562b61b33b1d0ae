"""The fixed-reply adapter fixture refuses to hand out an adapter that has not learnt its reply."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.inference.adapter_factory import AdapterDidNotLearn, train_fixed_reply_adapter


def test_an_adapter_that_did_not_learn_its_reply_fails_the_fixture_with_the_loss_reached(
    tailor_tiny_dir: Path, tmp_path: Path
) -> None:
    with pytest.raises(AdapterDidNotLearn, match=r"after 4 steps \(last loss \d+\.\d+\)"):
        train_fixed_reply_adapter(
            tailor_tiny_dir, "Alpha says hello", tmp_path / "adapter", steps_per_round=2, max_steps=4
        )
