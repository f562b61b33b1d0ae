"""Builds ``tailor-tiny``: a small, randomly initialised Llama chat model made from files in the repo.

Machines without network cannot download a base model, so Tailor makes one. The recipe:

1. A byte-level BPE tokenizer is trained with the ``tokenizers`` library on ``corpus.txt``
   (shipped beside this module), with ChatML's special tokens and ``chat_template.jinja``.
2. A ``LlamaForCausalLM`` gets weights drawn from a ``torch.Generator`` seeded with a constant,
   one generator per tensor, so a tensor's values depend only on its name and shape.
3. Both are written with ``save_pretrained`` into a temporary directory beside the target,
   which is then renamed into place, so readers never see a half-written model.

The shared steps (BPE training, seeded weights, the atomic build) live in
:mod:`services.common.tiny_models.building`, which the tiny models of real families use too.

The result is the same bytes on every machine with the same library versions, and contains
nothing about the machine or the time it was built on. Change anything in the recipe (corpus,
template, shapes, seed, init) and bump :data:`VERSION`: the version is part of the directory
name and of the marker file, so a stale build is rebuilt rather than reused.

torch, transformers and tokenizers are imported inside the functions that need them:
``services.common`` must stay importable in images without them (the gateway has no torch).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from services.common.tiny_models import building

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
PRE_TOKENIZER_PATTERN = building.PRE_TOKENIZER_PATTERN

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
    return building.read_marker(target_dir, MARKER_FILE) == _marker()


def build_tailor_tiny(target_dir: Path) -> Path:
    """Build tailor-tiny into ``target_dir`` unless a current build is already there; return it.

    Safe to call from several threads or processes at once (see
    :func:`~services.common.tiny_models.building.build_atomically`). A stale or incomplete
    directory at ``target_dir`` is replaced.
    """
    return building.build_atomically(
        target_dir, marker_file=MARKER_FILE, marker=_marker(), write=lambda staging: _write_model(staging)
    )


def _marker() -> dict[str, Any]:
    return {"name": NAME, "version": VERSION}


def _write_model(output_dir: Path) -> None:
    """Write the tokenizer and the model into ``output_dir`` (the marker file is written after)."""
    tokenizer = build_tokenizer()
    tokenizer.save_pretrained(output_dir)
    building.make_tokenizer_config_portable(output_dir / "tokenizer_config.json")
    model = build_model(vocab_size=len(tokenizer))
    with building.without_progress_bars():
        model.save_pretrained(output_dir)


def train_bpe() -> Tokenizer:
    """Train the byte-level BPE tokenizer on ``corpus.txt`` (deterministic: same merges every run)."""
    return building.train_bpe(
        CORPUS_PATH,
        SPECIAL_TOKENS,
        vocab_limit=TOKENIZER_VOCAB_LIMIT,
        min_frequency=TOKENIZER_MIN_FREQUENCY,
        pattern=PRE_TOKENIZER_PATTERN,
    )


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


def build_model(vocab_size: int) -> LlamaForCausalLM:
    """A float32 ``LlamaForCausalLM`` with seeded weights, for a tokenizer of ``vocab_size`` tokens."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    end_of_text_id, _, im_end_id = range(len(SPECIAL_TOKENS))
    config = LlamaConfig(
        vocab_size=building.round_up(vocab_size, VOCAB_PADDING_MULTIPLE),
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
    def constant(name: str, parameter: torch.nn.Parameter) -> float | None:
        if name == "model.norm.weight":
            return FINAL_NORM_SCALE
        if parameter.dim() == 1:  # the other RMSNorm scales (Llama has no biases)
            return 1.0
        return None  # seeded uniform

    building.initialise_weights(model, seed=SEED, std=INIT_STD, constant=constant)
