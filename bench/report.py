"""Writes a benchmark's figures into docs/benchmarks.md, with the machine, command and date.

Each benchmark owns one section, delimited by HTML comments with its name, and replaces
only that section, so benchmarks run separately never overwrite each other's figures.
"""

from __future__ import annotations

import datetime
import os
import platform
from pathlib import Path

BENCHMARKS_MD = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def machine_summary() -> str:
    """CPU model, core count and memory of this machine, in one line."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpu}, {os.cpu_count()} cores, {memory_gib:.0f} GiB, Python {platform.python_version()}"


def write_section(
    name: str, title: str, description: str, table: str, command: str, machine: str | None = None
) -> None:
    """Replace benchmark ``name``'s section; ``machine``: where it ran, when not here (a lent GPU)."""
    begin, end = f"<!-- bench:{name}:begin -->", f"<!-- bench:{name}:end -->"
    today = datetime.date.today().isoformat()
    section = (
        f"{begin}\n## {title}\n\n{description}\n\n"
        f"- date: {today}\n- machine: {machine or machine_summary()}\n"
        f"- command: `{command}`\n\n{table}\n{end}"
    )
    text = BENCHMARKS_MD.read_text() if BENCHMARKS_MD.exists() else "# Benchmarks\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    BENCHMARKS_MD.parent.mkdir(parents=True, exist_ok=True)
    BENCHMARKS_MD.write_text(text)
