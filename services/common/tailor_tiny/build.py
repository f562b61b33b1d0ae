"""Builds ``tailor-tiny``: a small, randomly initialised Llama chat model made from files in the repo.

Machines without network cannot download a base model, so Tailor makes one. The recipe:

1. A byte-level BPE tokenizer is trained with the ``tokenizers`` library on ``corpus.txt``
   (shipped beside this module), with ChatML's special tokens and ``chat_template.jinja``.
2. A ``LlamaForCausalLM`` gets weights drawn from a ``torch.Generator`` seeded with a constant,
   one generator per tensor, so a tensor's values depend only on its name and shape.
3. Both are written with ``save_pretrained`` into a temporary directory beside the target,
   which is then renamed into place, so readers never see a half-written model.

The result is the same bytes on every machine with the same library versions, and contains
nothing about the machine or the time it was built on. Change anything in the recipe (corpus,
template, shapes, seed, init) and bump :data:`VERSION`: the version is part of the directory
name and of the marker file, so a stale build is rebuilt rather than reused.

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
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from tokenizers import Tokenizer
    from transformers import LlamaForCausalLM, PreTrainedTokenizerBase

NAME = "tailor-tiny"
# Bump whenever anything below, corpus.txt or chat_template.jinja changes.
VERSION = 2
SEED = 20_240_611
# Written last into the model directory; its presence with the current VERSION means "complete".
MARKER_FILE = "tailor_tiny.json"

END_OF_TEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
SPECIAL_TOKENS = (END_OF_TEXT, IM_START, IM_END)  # ids 0, 1, 2

# BPE stops earlier than this when no pair in the corpus occurs at least twice more.
TOKENIZER_VOCAB_LIMIT = 4096
TOKENIZER_MIN_FREQUENCY = 2
# Qwen2's pre-tokenizer split (digits one by one, words with their leading space or punctuation),
# except that a newline always ends a piece: Qwen's `\s*[\r\n]+` would let the newline closing
# a ChatML header merge with newlines that open the message, so a token would straddle the
# start of the assistant mask.
PRE_TOKENIZER_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|[^\S\r\n]*[\r\n]|\s+(?!\S)|\s+"
)

# head_dim 64 is what vLLM's GPU attention kernels expect of a vanilla Llama.
HIDDEN_SIZE = 128
NUM_ATTENTION_HEADS = 2
NUM_KEY_VALUE_HEADS = 2
NUM_HIDDEN_LAYERS = 4
INTERMEDIATE_SIZE = 384
MAX_POSITION_EMBEDDINGS = 2048
# The embedding matrix is padded to a multiple of this (as Qwen and Llama do), beyond the tokenizer.
VOCAB_PADDING_MULTIPLE = 64
INIT_STD = 0.02
# Scale of the final RMSNorm, in front of the (tied) output embedding. A logit is the normed
# hidden state (RMS = this scale) dotted with an embedding row (|row| ~ INIT_STD * sqrt(128)),
# so with the usual 1.0 no logit can exceed about 2.6 and a fine-tune cannot make any reply
# likely: LoRA (which leaves norms and embeddings frozen) plateaued at a loss of 5.4 on a
# fixed reply. At 8.0 it reaches 0.02 in 15 steps, and initial logits stay small (std ~1.8).
FINAL_NORM_SCALE = 8.0

_PACKAGE_DIR = Path(__file__).resolve().parent
CORPUS_PATH = _PACKAGE_DIR / "corpus.txt"
CHAT_TEMPLATE_PATH = _PACKAGE_DIR / "chat_template.jinja"


def model_dir(models_dir: Path) -> Path:
    """Where the current version of tailor-tiny lives under a models directory."""
    return models_dir / f"{NAME}-v{VERSION}"


def ensure_tailor_tiny(models_dir: Path) -> Path:
    """Return the current tailor-tiny under ``models_dir``, building it first if it is missing."""
    return build_tailor_tiny(model_dir(models_dir))


def is_built(target_dir: Path) -> bool:
    """Whether ``target_dir`` holds a complete tailor-tiny of the current :data:`VERSION`."""
    try:
        marker = json.loads((target_dir / MARKER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return marker == _marker()


def build_tailor_tiny(target_dir: Path) -> Path:
    """Build tailor-tiny into ``target_dir`` unless a current build is already there; return it.

    Safe to call from several threads or processes at once: one builds while the others wait
    on a lock file beside the target (``.<name>.lock``, left in place), then find the finished
    model. A stale or incomplete directory at ``target_dir`` is replaced.
    """
    target_dir = Path(target_dir).absolute()
    if is_built(target_dir):
        return target_dir
    target_dir.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(target_dir.parent / f".{target_dir.name}.lock"):
        if is_built(target_dir):  # another process finished it while we waited
            return target_dir
        _remove_leftovers_of_crashed_builds(target_dir)
        staging_dir = Path(tempfile.mkdtemp(prefix=f".{target_dir.name}.tmp-", dir=target_dir.parent))
        try:
            _write_model(staging_dir)
            _make_world_readable(staging_dir)
            if target_dir.exists():
                _remove_stale(target_dir)
            os.replace(staging_dir, target_dir)
        finally:
            shutil.rmtree(staging_dir, ignore_errors=True)
    return target_dir


def _marker() -> dict[str, Any]:
    return {"name": NAME, "version": VERSION}


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
    # temporary file; the model is read by other users too (the vLLM and trainer images).
    directory.chmod(0o755)
    for path in directory.iterdir():
        path.chmod(0o644)


def _remove_stale(target_dir: Path) -> None:
    # Rename first so the target path is free at once, even if deleting a large tree is slow.
    doomed = Path(tempfile.mkdtemp(prefix=f".{target_dir.name}.stale-", dir=target_dir.parent))
    os.replace(target_dir, doomed / target_dir.name)
    shutil.rmtree(doomed, ignore_errors=True)


def _write_model(output_dir: Path) -> None:
    """Write the tokenizer, the model and the marker file into ``output_dir``."""
    tokenizer = build_tokenizer()
    tokenizer.save_pretrained(output_dir)
    _make_tokenizer_config_portable(output_dir / "tokenizer_config.json")
    model = build_model(vocab_size=len(tokenizer))
    with _without_progress_bars():
        model.save_pretrained(output_dir)
    (output_dir / MARKER_FILE).write_text(json.dumps(_marker(), indent=2) + "\n", encoding="utf-8")


@contextlib.contextmanager
def _without_progress_bars() -> Iterator[None]:
    # save_pretrained draws a progress bar for its single shard; noise in service logs.
    from transformers.utils import logging as transformers_logging

    was_enabled = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            transformers_logging.enable_progress_bar()


def train_bpe() -> Tokenizer:
    """Train the byte-level BPE tokenizer on ``corpus.txt`` (deterministic: same merges every run)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    corpus = CORPUS_PATH.read_text(encoding="utf-8")
    # The trainer does not split added tokens out of its input: without this, merges would be
    # spent on the pieces of "<|im_start|>" that never occur once the token is matched whole.
    special_tokens_pattern = "|".join(re.escape(token) for token in SPECIAL_TOKENS)
    training_texts = [text for text in re.split(special_tokens_pattern, corpus) if text]

    tokenizer = Tokenizer(models.BPE())
    # No normalizer: byte-level BPE then round-trips any UTF-8 text exactly.
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRE_TOKENIZER_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    # No post-processor: nothing (no BOS) is added around encoded text, and offsets stay
    # untrimmed, which the assistant mask needs to map characters to tokens.
    trainer = trainers.BpeTrainer(
        vocab_size=TOKENIZER_VOCAB_LIMIT,
        min_frequency=TOKENIZER_MIN_FREQUENCY,
        special_tokens=list(SPECIAL_TOKENS),
        # All 256 bytes are in the vocabulary even if the corpus lacks some, so any text encodes.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(training_texts, trainer=trainer)
    return tokenizer


def build_tokenizer() -> PreTrainedTokenizerBase:
    """The transformers tokenizer: trained BPE, ChatML special tokens and the chat template."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=train_bpe(),
        # ChatML models stop at the end of their turn; padding uses the document separator.
        eos_token=IM_END,
        pad_token=END_OF_TEXT,
        bos_token=None,
        unk_token=None,  # byte-level: every input has an encoding, nothing is unknown
        model_max_length=MAX_POSITION_EMBEDDINGS,
        chat_template=CHAT_TEMPLATE_PATH.read_text(encoding="utf-8"),
    )


def _make_tokenizer_config_portable(config_path: Path) -> None:
    # transformers 5 records its own backend class name, which transformers 4 (and tools pinned
    # to it) cannot load; the generic fast tokenizer class means the same thing to both.
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def build_model(vocab_size: int) -> LlamaForCausalLM:
    """A float32 ``LlamaForCausalLM`` with seeded weights, for a tokenizer of ``vocab_size`` tokens."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    end_of_text_id, _, im_end_id = range(len(SPECIAL_TOKENS))
    config = LlamaConfig(
        vocab_size=_round_up(vocab_size, VOCAB_PADDING_MULTIPLE),
        hidden_size=HIDDEN_SIZE,
        intermediate_size=INTERMEDIATE_SIZE,
        num_hidden_layers=NUM_HIDDEN_LAYERS,
        num_attention_heads=NUM_ATTENTION_HEADS,
        num_key_value_heads=NUM_KEY_VALUE_HEADS,
        max_position_embeddings=MAX_POSITION_EMBEDDINGS,
        initializer_range=INIT_STD,
        tie_word_embeddings=True,
        # As in Qwen's chat models: no BOS is added, generation ends at <|im_end|>.
        bos_token_id=end_of_text_id,
        eos_token_id=im_end_id,
        pad_token_id=end_of_text_id,
        dtype="float32",
    )
    model = LlamaForCausalLM(config).to(torch.float32)
    model.generation_config = GenerationConfig(
        bos_token_id=end_of_text_id,
        eos_token_id=[im_end_id, end_of_text_id],
        pad_token_id=end_of_text_id,
    )
    _initialise_weights(model)
    model.eval()
    return model


def _initialise_weights(model: torch.nn.Module) -> None:
    # Overwrite whatever transformers' own init drew, whose order and method change between
    # versions. named_parameters() lists a tied weight once (the embedding, shared by lm_head).
    import torch

    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name == "model.norm.weight":
                parameter.fill_(FINAL_NORM_SCALE)
            elif parameter.dim() == 1:  # the other RMSNorm scales (Llama has no biases)
                parameter.fill_(1.0)
            else:
                parameter.copy_(_seeded_uniform(name, parameter.shape))


def _seeded_uniform(name: str, shape: torch.Size) -> torch.Tensor:
    # Uniform with standard deviation INIT_STD, from a generator seeded by the tensor's name.
    # Uniform draws are the generator's integers scaled by powers of two, the same on any CPU;
    # torch's normal draws go through vectorised log/cos whose results may depend on the CPU's
    # instruction set. Every arithmetic step below is a single, exactly rounded float32 operation.
    import torch

    name_digest = hashlib.sha256(f"{SEED}:{name}".encode()).digest()
    generator = torch.Generator(device="cpu").manual_seed(int.from_bytes(name_digest[:8], "little"))
    half_width = INIT_STD * 3**0.5
    unit = torch.rand(shape, generator=generator, dtype=torch.float32)
    return (unit * 2.0 - 1.0) * half_width


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple
