"""GPU tests run only when asked for with ``-m gpu``; a plain run deselects them.

Skipped tests would show in ``make test``'s summary as if the suite had looked at the GPU
paths and found nothing to do; deselected ones say plainly that nothing GPU-related ran.
``make test-gpu`` and ``bench/gpu_check.sh`` pass ``-m gpu``. Any other ``-m`` expression is
left to pytest, which applies it to the marker as usual.
"""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.option.markexpr:
        return
    deselected = [item for item in items if item.get_closest_marker("gpu")]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if not item.get_closest_marker("gpu")]
