"""Reads back what wandb wrote for an offline run: the records of its ``run-<id>.wandb`` file.

wandb 0.31 no longer ships a Python reader for this file (its Go core writes it), so this is
the file's documented LevelDB-log framing: a 7-byte header (":W&B", magic, version), then
32 KiB blocks of chunks (CRC-32, length, type: 1 full, 2 first, 3 middle, 4 last) holding
serialized ``Record`` protobufs.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2

_BLOCK = 32768
_CHUNK_HEADER = struct.Struct("<IHB")
_FULL, _LAST = 1, 4


def records(path: Path) -> Iterator[wandb_internal_pb2.Record]:
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a wandb run file"
    position, pending = 7, b""
    while position + _CHUNK_HEADER.size <= len(data):
        left_in_block = _BLOCK - position % _BLOCK
        if left_in_block < _CHUNK_HEADER.size:
            position += left_in_block  # the block's zero padding
            continue
        _, length, kind = _CHUNK_HEADER.unpack_from(data, position)
        if length == 0 and kind == 0:
            position += left_in_block
            continue
        start = position + _CHUNK_HEADER.size
        pending += data[start : start + length]
        position = start + length
        if kind in (_FULL, _LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


@dataclass
class OfflineRun:
    """An offline run as logged: its identity, config and history rows (one dict per ``log`` call)."""

    run_id: str
    project: str
    name: str
    tags: list[str]
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)


def offline_runs(directory: Path) -> list[OfflineRun]:
    """Every offline run wandb wrote under ``directory`` (``wandb/offline-run-*``), oldest first."""
    runs = []
    for run_file in sorted(directory.glob("wandb/offline-run-*/run-*.wandb")):
        run: OfflineRun | None = None
        for record in records(run_file):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                info = record.run
                run = OfflineRun(info.run_id, info.project, info.display_name, list(info.tags))
                run.config = {_key(item): json.loads(item.value_json) for item in info.config.update}
            elif kind == "history" and run is not None:
                run.history.append({_key(item): json.loads(item.value_json) for item in record.history.item})
        assert run is not None, f"{run_file} has no run record"
        runs.append(run)
    return runs


def _key(item: wandb_internal_pb2.HistoryItem | wandb_internal_pb2.ConfigItem) -> str:
    # wandb-core writes a name as ``key`` or as the one-element path ``nested_key``.
    return item.key or "/".join(item.nested_key)
