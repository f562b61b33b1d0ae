"""tailor-tiny, the built-in base model: a small Llama chat model built from files in this package.

It needs no download, so tests and the default local run train and serve it on any machine.
Build it with ``python -m services.common.tailor_tiny <dir>`` or :func:`ensure_tailor_tiny`.
Importing this package does not import torch; building does.
"""

from __future__ import annotations

from services.common.tailor_tiny.build import (
    NAME,
    VERSION,
    build_tailor_tiny,
    ensure_tailor_tiny,
    is_built,
    model_dir,
)

__all__ = ["NAME", "VERSION", "build_tailor_tiny", "ensure_tailor_tiny", "is_built", "model_dir"]
