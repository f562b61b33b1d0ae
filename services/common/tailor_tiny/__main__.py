"""Command line: ``python -m services.common.tailor_tiny <dir>`` builds tailor-tiny into ``<dir>``."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from services.common.tailor_tiny.build import VERSION, build_tailor_tiny


def main(argv: list[str] | None = None) -> None:
    """Build tailor-tiny into the directory given on the command line (kept if already current)."""
    parser = argparse.ArgumentParser(
        prog="python -m services.common.tailor_tiny",
        description=f"Build the built-in tailor-tiny base model (recipe version {VERSION}).",
    )
    parser.add_argument("target_dir", type=Path, help="directory to build the model into")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    path = build_tailor_tiny(args.target_dir)
    print(f"tailor-tiny v{VERSION} at {path} ({time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()
