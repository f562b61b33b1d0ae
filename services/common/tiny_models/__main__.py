"""Command line: ``python -m services.common.tiny_models <name> <dir>`` builds a tiny model into ``<dir>``."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from services.common.tiny_models import TINY_MODELS


def main(argv: list[str] | None = None) -> None:
    """Build the named tiny model into the directory given (kept if already current)."""
    parser = argparse.ArgumentParser(
        prog="python -m services.common.tiny_models", description="Build a tiny model of a real family."
    )
    parser.add_argument("name", choices=sorted(TINY_MODELS))
    parser.add_argument("target_dir", type=Path, help="directory to build the model into")
    args = parser.parse_args(argv)
    model = TINY_MODELS[args.name]
    started = time.perf_counter()
    path = model.build(args.target_dir)
    print(f"{model.name} v{model.version} at {path} ({time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()
