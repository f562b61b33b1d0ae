"""What every built-in model's builder shares: BPE training, seeded weights, and the atomic build.

Tailor builds its base models from files in the repo (no download): ``tailor-tiny``
(:mod:`services.common.tailor_tiny`) and the tiny models of real families (this package).
The recipe is the same for all of them; only the special tokens, the chat template and the
architecture differ:

1. A byte-level BPE tokenizer is trained with the ``tokenizers`` library on a corpus file with
   the model's special tokens (:func:`train_bpe`).
2. The model gets weights drawn from ``torch.Generator`` seeded by the model's seed and the
   tensor's name, one generator per tensor, so a tensor's values depend only on its name and
   shape, and are the same bits on any CPU (:func:`initialise_weights`).
3. Tokenizer and model are written into a temporary directory beside the target, which is then
   renamed into place under a lock, with a marker file naming the model and its recipe version
   written last (:func:`build_atomically`): readers never see a half-written model, and a build
   of an older version is replaced rather than reused.

torch, transformers and tokenizers are imported inside the functions that need them:
``services.common`` must stay importable in images without them (the gateway has no torch).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from services.common.data_dir import current_umask

if TYPE_CHECKING:
    import torch
    from tokenizers import Tokenizer

# Qwen2's pre-tokenizer split (digits one by one, words with their leading space or punctuation),
# except that a newline always ends a piece: Qwen's `\s*[\r\n]+` would let the newline closing
# a chat header merge with newlines that open the message, so a token would straddle the start
# of the assistant mask.
PRE_TOKENIZER_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|[^\S\r\n]*[\r\n]|\s+(?!\S)|\s+"
)


# ---------------------------------------------------------------------------------------------
# The atomic build


def read_marker(target_dir: Path, marker_file: str) -> dict[str, Any] | None:
    """The marker a finished build wrote into ``target_dir``; None when there is none (or unreadable)."""
    try:
        marker = json.loads((target_dir / marker_file).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None


def build_atomically(
    target_dir: Path, *, marker_file: str, marker: dict[str, Any], write: Callable[[Path], None]
) -> Path:
    """Build a model into ``target_dir`` with ``write`` unless a build with ``marker`` is there; return it.

    ``write(directory)`` writes the model's files into an empty staging directory; the marker is
    written after it. Safe to call from several threads or processes at once: one builds while
    the others wait on a lock file beside the target (``.<name>.lock``, left in place), then
    find the finished model. A stale or incomplete directory at ``target_dir`` is replaced.
    """
    target_dir = Path(target_dir).absolute()
    if read_marker(target_dir, marker_file) == marker:
        return target_dir
    target_dir.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(target_dir.parent / f".{target_dir.name}.lock"):
        if read_marker(target_dir, marker_file) == marker:  # another process finished it while we waited
            return target_dir
        _remove_leftovers_of_crashed_builds(target_dir)
        staging_dir = Path(tempfile.mkdtemp(prefix=f".{target_dir.name}.tmp-", dir=target_dir.parent))
        try:
            write(staging_dir)
            (staging_dir / marker_file).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
            _make_world_readable(staging_dir)
            if target_dir.exists():
                _remove_stale(target_dir)
            os.replace(staging_dir, target_dir)
        finally:
            shutil.rmtree(staging_dir, ignore_errors=True)
    return target_dir


@contextlib.contextmanager
def _exclusive_lock(lock_path: Path) -> Iterator[None]:
    # flock conflicts between separate open() calls even within one process, so this
    # serialises threads as well as processes.
    with lock_path.open("a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def _remove_leftovers_of_crashed_builds(target_dir: Path) -> None:
    # Only called under the lock, so no other build of this target is using these.
    for pattern in (f".{target_dir.name}.tmp-*", f".{target_dir.name}.stale-*"):
        for leftover in target_dir.parent.glob(pattern):
            shutil.rmtree(leftover, ignore_errors=True)


def _make_world_readable(directory: Path) -> None:
    # mkdtemp makes the directory private and transformers writes weights through a private
    # temporary file; a model built into an image is read by other users too (the vLLM and
    # trainer images build it under the default umask 022: 0755/0644). The services run
    # under umask 077 (services/common/data_dir.py), so the models they build in their data
    # directory stay owner-only like everything else there: the umask decides.
    mask = current_umask()
    directory.chmod(0o755 & ~mask)
    for path in directory.iterdir():
        path.chmod(0o644 & ~mask)


def _remove_stale(target_dir: Path) -> None:
    # Rename first so the target path is free at once, even if deleting a large tree is slow.
    doomed = Path(tempfile.mkdtemp(prefix=f".{target_dir.name}.stale-", dir=target_dir.parent))
    os.replace(target_dir, doomed / target_dir.name)
    shutil.rmtree(doomed, ignore_errors=True)


@contextlib.contextmanager
def without_progress_bars() -> Iterator[None]:
    """Silence transformers' progress bars (save_pretrained and from_pretrained draw them): log noise."""
    from transformers.utils import logging as transformers_logging

    was_enabled = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            transformers_logging.enable_progress_bar()


# ---------------------------------------------------------------------------------------------
# The tokenizer


def train_bpe(
    corpus_path: Path,
    special_tokens: Sequence[str],
    *,
    vocab_limit: int,
    min_frequency: int,
    pattern: str = PRE_TOKENIZER_PATTERN,
    nfc: bool = False,
) -> Tokenizer:
    """Train a byte-level BPE tokenizer on ``corpus_path`` (deterministic: same merges every run).

    The special tokens get the first ids, in the order given. BPE stops earlier than
    ``vocab_limit`` when no pair in the corpus occurs at least ``min_frequency`` times more.
    ``pattern`` splits text into the pieces BPE merges within; ``nfc`` puts Unicode NFC
    normalisation in front (as Qwen2's tokenizer does), else text is not normalised.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    corpus = corpus_path.read_text(encoding="utf-8")
    # The trainer does not split added tokens out of its input: without this, merges would be
    # spent on the pieces of "<|im_start|>" that never occur once the token is matched whole.
    special_tokens_pattern = "|".join(re.escape(token) for token in special_tokens)
    training_texts = [text for text in re.split(special_tokens_pattern, corpus) if text]

    tokenizer = Tokenizer(models.BPE())
    # No normalizer by default: byte-level BPE then round-trips any UTF-8 text exactly.
    if nfc:
        tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    # No post-processor here: nothing is added around encoded text unless a model asks for it,
    # and offsets stay untrimmed, which the assistant mask needs to map characters to tokens.
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_limit,
        min_frequency=min_frequency,
        special_tokens=list(special_tokens),
        # All 256 bytes are in the vocabulary even if the corpus lacks some, so any text encodes.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(training_texts, trainer=trainer)
    return tokenizer


def make_tokenizer_config_portable(config_path: Path) -> None:
    """Name the generic fast tokenizer class in a saved ``tokenizer_config.json``.

    transformers 5 records its own backend class name, which transformers 4 (and tools pinned
    to it) cannot load; the generic fast tokenizer class means the same thing to both.
    """
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# The weights


def initialise_weights(
    model: torch.nn.Module,
    *,
    seed: int,
    std: float,
    constant: Callable[[str, torch.nn.Parameter], float | None],
) -> None:
    """Overwrite every parameter: ``constant(name, parameter)`` when it gives a value, else seeded uniform.

    Whatever transformers' own init drew is replaced, as its order and method change between
    versions. ``named_parameters()`` lists a tied weight once (the embedding, shared by lm_head).
    """
    import torch

    with torch.no_grad():
        for name, parameter in model.named_parameters():
            value = constant(name, parameter)
            if value is not None:
                parameter.fill_(value)
            else:
                parameter.copy_(seeded_uniform(seed, name, parameter.shape, std))


def seeded_uniform(seed: int, name: str, shape: torch.Size, std: float) -> torch.Tensor:
    """Uniform values with standard deviation ``std`` from a generator seeded by ``seed`` and ``name``.

    Uniform draws are the generator's integers scaled by powers of two, the same on any CPU;
    torch's normal draws go through vectorised log/cos whose results may depend on the CPU's
    instruction set. Every arithmetic step below is a single, exactly rounded float32 operation.
    """
    import torch

    name_digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    generator = torch.Generator(device="cpu").manual_seed(int.from_bytes(name_digest[:8], "little"))
    half_width = std * 3**0.5
    unit = torch.rand(shape, generator=generator, dtype=torch.float32)
    return (unit * 2.0 - 1.0) * half_width


def round_up(value: int, multiple: int) -> int:
    """``value`` rounded up to a multiple of ``multiple``."""
    return -(-value // multiple) * multiple
