"""One recipe for the tiny models of real families: what a family module fills in, and the build.

A family module (``llama3.py``, ``qwen25.py``, ...) describes its model as a :class:`TinyModel`:
its special tokens (in the family's spelling), the chat template (``templates/<name>.jinja``,
written after the family's published one), the tokenizer's bos/eos/pad, and a function that
makes the family's transformers config. Everything else is shared with tailor-tiny
(:mod:`.building`): the BPE tokenizer trained on tailor-tiny's ``corpus.txt``, seeded uniform
weights, and the atomic, locked build with a marker file naming the recipe version.

Sizes are tailor-tiny's (hidden 128, head_dim 64 as vLLM's kernels want, 4 layers, float32),
with grouped-query attention (2 query heads, 1 key/value head) as every one of these families has.

**Learnable by LoRA.** A LoRA fine-tune leaves norms and embeddings frozen, and with a final
norm scale of 1.0 no logit of a 128-wide model with 0.02-scaled embeddings can exceed about
2.6: a fine-tune could not make any reply likely (see tailor-tiny's ``FINAL_NORM_SCALE``). Each
family's final norm multiplies by :data:`FINAL_NORM_SCALE` instead; Gemma's norms compute
``x * (1 + weight)``, so its final norm weight is ``FINAL_NORM_SCALE - 1`` and its other norms 0.

Importing this module imports neither torch nor transformers; building does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from services.common.tiny_models import building

if TYPE_CHECKING:
    import torch
    from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerFast

# Written last into the model directory; its presence with the current version means "complete".
MARKER_FILE = "tiny_model.json"
TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"

TOKENIZER_VOCAB_LIMIT = 4096
TOKENIZER_MIN_FREQUENCY = 2
HIDDEN_SIZE = 128
HEAD_DIM = 64
NUM_ATTENTION_HEADS = 2
NUM_KEY_VALUE_HEADS = 1
NUM_HIDDEN_LAYERS = 4
INTERMEDIATE_SIZE = 384
MAX_POSITION_EMBEDDINGS = 2048
VOCAB_PADDING_MULTIPLE = 64
INIT_STD = 0.02
FINAL_NORM_SCALE = 8.0


def common_config(vocab_size: int) -> dict[str, Any]:
    """The config fields every tiny model shares (sizes, init range, float32)."""
    return {
        "vocab_size": building.round_up(vocab_size, VOCAB_PADDING_MULTIPLE),
        "hidden_size": HIDDEN_SIZE,
        "head_dim": HEAD_DIM,
        "intermediate_size": INTERMEDIATE_SIZE,
        "num_hidden_layers": NUM_HIDDEN_LAYERS,
        "num_attention_heads": NUM_ATTENTION_HEADS,
        "num_key_value_heads": NUM_KEY_VALUE_HEADS,
        "max_position_embeddings": MAX_POSITION_EMBEDDINGS,
        "initializer_range": INIT_STD,
        "dtype": "float32",
    }


@dataclass(frozen=True)
class TinyModel:
    """A tiny model of a real family: its tokens, template and architecture, and how it is built."""

    name: str
    # Bump whenever anything the build reads for this model changes (its template included).
    version: int
    seed: int
    model_class: str  # transformers class, e.g. "LlamaForCausalLM"
    special_tokens: tuple[str, ...]  # special added tokens, ids 0.. in this order
    template: str  # file name under templates/
    eos_token: str
    # generation_config.eos_token_id: every token that ends the model's turn, in the family's order
    end_tokens: tuple[str, ...]
    # config fields naming token ids, by token: {"bos_token_id": "<s>", ...}
    config_token_ids: dict[str, str]
    make_config: Callable[[dict[str, Any]], PretrainedConfig]  # common_config + token ids -> config
    bos_token: str | None = None
    pad_token: str | None = None
    unk_token: str | None = None
    # The tokenizer puts bos_token in front of text encoded with add_special_tokens=True (as the
    # family's tokenizer does); chat templates write it themselves and are encoded without.
    adds_bos: bool = False
    # Tokens matched whole but not special: kept in decoded text (skip_special_tokens=True), so
    # the tool-call markers in a reply reach the tool-call parser. ids after the BPE vocabulary.
    plain_added_tokens: tuple[str, ...] = ()
    # The BPE pre-tokenizer pattern and NFC normalisation. transformers rebuilds some families'
    # tokenizers in code whatever tokenizer.json says (Qwen2: its own pattern and NFC); such a
    # family must be trained with what it will be loaded with.
    pre_tokenizer_pattern: str = building.PRE_TOKENIZER_PATTERN
    nfc: bool = False
    # Gemma's norms compute x * (1 + weight): its neutral weight is 0, not 1.
    norm_offset: float = 0.0
    generation_extra: dict[str, Any] = field(default_factory=dict)

    # -- where it lives ------------------------------------------------------------------------

    def directory(self, models_dir: Path) -> Path:
        """Where the current version of this model lives under a models directory."""
        return models_dir / f"{self.name}-v{self.version}"

    def ensure(self, models_dir: Path) -> Path:
        """The current build under ``models_dir``, built first if it is missing."""
        return self.build(self.directory(models_dir))

    def is_built(self, target_dir: Path) -> bool:
        """Whether ``target_dir`` holds a complete build of the current version."""
        return building.read_marker(target_dir, MARKER_FILE) == self._marker()

    def build(self, target_dir: Path) -> Path:
        """Build into ``target_dir`` unless a current build is there; return it (atomic, locked)."""
        return building.build_atomically(
            target_dir, marker_file=MARKER_FILE, marker=self._marker(), write=self.write
        )

    def _marker(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version}

    @property
    def template_path(self) -> Path:
        return TEMPLATES_DIR / self.template

    # -- what it is made of --------------------------------------------------------------------

    def write(self, output_dir: Path) -> None:
        """Write the tokenizer and the model into ``output_dir`` (the marker file is written after)."""
        tokenizer = self.build_tokenizer()
        tokenizer.save_pretrained(output_dir)
        building.make_tokenizer_config_portable(output_dir / "tokenizer_config.json")
        model = self.build_model(tokenizer)
        with building.without_progress_bars():
            model.save_pretrained(output_dir)

    def build_tokenizer(self) -> PreTrainedTokenizerFast:
        """The transformers tokenizer: BPE on tailor-tiny's corpus, the family's tokens and template."""
        from tokenizers import AddedToken, processors
        from transformers import PreTrainedTokenizerFast

        from services.common.tailor_tiny.build import CORPUS_PATH

        bpe = building.train_bpe(
            CORPUS_PATH,
            self.special_tokens,
            vocab_limit=TOKENIZER_VOCAB_LIMIT,
            min_frequency=TOKENIZER_MIN_FREQUENCY,
            pattern=self.pre_tokenizer_pattern,
            nfc=self.nfc,
        )
        if self.plain_added_tokens:
            bpe.add_tokens(
                [AddedToken(token, special=False, normalized=False) for token in self.plain_added_tokens]
            )
        if self.adds_bos:
            assert self.bos_token is not None
            bos_id = bpe.token_to_id(self.bos_token)
            bpe.post_processor = processors.TemplateProcessing(
                single=f"{self.bos_token} $A",
                pair=f"{self.bos_token} $A {self.bos_token} $B:1",
                special_tokens=[(self.bos_token, bos_id)],
            )
        return PreTrainedTokenizerFast(
            tokenizer_object=bpe,
            bos_token=self.bos_token,
            eos_token=self.eos_token,
            pad_token=self.pad_token,
            unk_token=self.unk_token,  # byte-level: nothing is unknown; named as the family names it
            model_max_length=MAX_POSITION_EMBEDDINGS,
            chat_template=self.template_path.read_text(encoding="utf-8"),
        )

    def build_model(self, tokenizer: PreTrainedTokenizerFast) -> PreTrainedModel:
        """The float32 model with seeded weights, for ``tokenizer``."""
        import torch
        import transformers
        from transformers import GenerationConfig

        def token_id(token: str) -> int:
            found = tokenizer.convert_tokens_to_ids(token)
            if not isinstance(found, int) or (found == tokenizer.unk_token_id and token != self.unk_token):
                raise ValueError(f"{token!r} is not a token of {self.name}'s tokenizer")
            return found

        fields = common_config(len(tokenizer))
        fields.update({name: token_id(token) for name, token in self.config_token_ids.items()})
        config = self.make_config(fields)
        model = getattr(transformers, self.model_class)(config).to(torch.float32)
        model.generation_config = GenerationConfig(
            bos_token_id=config.bos_token_id,
            eos_token_id=[token_id(token) for token in self.end_tokens],
            pad_token_id=config.pad_token_id,
            **self.generation_extra,
        )
        building.initialise_weights(model, seed=self.seed, std=INIT_STD, constant=self._constant)
        model.eval()
        return model

    def _constant(self, name: str, parameter: torch.nn.Parameter) -> float | None:
        # Norm scales are constants (the final one scaled, see the module's docstring); every
        # other tensor (projections, embeddings, an untied lm_head, Qwen's q/k/v biases) is drawn.
        if name == "model.norm.weight":
            return FINAL_NORM_SCALE - self.norm_offset
        if name.endswith("norm.weight"):
            return 1.0 - self.norm_offset
        return None
