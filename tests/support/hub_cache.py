"""A Hugging Face hub cache written by hand: a model directory as if ``Org/Name`` had been downloaded.

Deployments without network run with ``HF_HUB_OFFLINE=1`` and a pre-populated cache (a volume
at ``$HF_HOME``); tests cannot download, so they make the cache themselves, in huggingface_hub's
own layout (``huggingface_hub.file_download``)::

    $HF_HOME/hub/models--Org--Name/
        blobs/<sha256 of the file>            the bytes, once per distinct content
        snapshots/<40-hex commit>/<file>      a relative symlink to ../../blobs/<sha256>
        refs/main                             the commit hash (no newline)

``from_pretrained("Org/Name")`` in transformers, and vLLM's loader (``snapshot_download`` with
``local_files_only``), then find the files offline exactly as in a real cache.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path

_COMMIT = re.compile(r"^[0-9a-f]{40}$")


def repo_cache_dir(hf_home: Path, repo_id: str) -> Path:
    """``$HF_HOME/hub/models--Org--Name``, huggingface_hub's folder for a model repo."""
    return Path(hf_home) / "hub" / ("models--" + repo_id.replace("/", "--"))


def populate_hub_cache(model_dir: Path, repo_id: str, hf_home: Path, revision: str = "main") -> Path:
    """Put the files of ``model_dir`` in the hub cache under ``hf_home`` as ``repo_id``; returns the snapshot.

    The commit hash is derived from the files' names and contents, so the same directory gives
    the same snapshot. ``revision`` is a branch or tag name (``refs/<revision>`` points at the
    commit), or a 40-hex commit hash used as the snapshot's name itself. Hidden files (build
    locks) are left out.
    """
    model_dir = Path(model_dir)
    files = sorted(
        path
        for path in model_dir.rglob("*")
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(model_dir).parts)
    )
    if not files:
        raise ValueError(f"{model_dir} holds no files")
    digests = {path: _sha256(path) for path in files}

    if _COMMIT.match(revision):
        commit = revision
    else:
        listing = "".join(f"{path.relative_to(model_dir).as_posix()}\0{digests[path]}\n" for path in files)
        commit = hashlib.sha1(listing.encode()).hexdigest()

    repo = repo_cache_dir(hf_home, repo_id)
    blobs = repo / "blobs"
    snapshot = repo / "snapshots" / commit
    blobs.mkdir(parents=True, exist_ok=True)
    for path in files:
        blob = blobs / digests[path]
        if not blob.exists():
            shutil.copyfile(path, blob)
        link = snapshot / path.relative_to(model_dir)
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(os.path.relpath(blob, link.parent))

    if not _COMMIT.match(revision):
        refs = repo / "refs" / revision
        refs.parent.mkdir(parents=True, exist_ok=True)
        refs.write_text(commit)
    return snapshot


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
