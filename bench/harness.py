"""Pieces the benchmarks share: running a measured child process, and feeding the SDK chunks.

Each arm of a benchmark runs in its own process (so its peak RSS is its own) and prints
one JSON line as its last output; :func:`run_child` runs it and reads that line.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_child(args: list[str]) -> dict[str, object]:
    """Runs ``args`` from the repository root and returns the JSON of its last output line."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(args, check=True, capture_output=True, text=True, cwd=REPO, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


class ChunkReader:
    """A file-like ``read(n)`` over an iterator of chunks, for the minio SDK's ``put_object``.

    It pulls chunks only as the SDK asks, so a direct-path baseline holds no more than the
    part the SDK is assembling, as the streamed path under test does.
    """

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""

    def read(self, n: int) -> bytes:
        while len(self._buffer) < n:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        out, self._buffer = self._buffer[:n], self._buffer[n:]
        return out
