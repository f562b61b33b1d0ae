"""The KV cache of a running batch whose rows join and leave between decode steps.

transformers' ``DynamicCache`` holds one ``[rows, heads, length, head_dim]`` tensor per
layer for keys and one for values, one length for all rows. Rows of a continuous batch
have different lengths, so they are kept **left-padded**: every row's last token sits in
the last column, and an attention mask marks which columns are real. Then a decode step
is one forward pass of one new token per row, exactly as ``generate`` does for a padded
batch. The costs of this layout:

- a joining group of rows (prefilled together, padded among themselves) is merged by
  padding the shorter side on the left and concatenating: one copy of the cache per join;
- leaving rows are dropped with an index select, and columns that became padding for
  every remaining row are trimmed off the left: one copy of the cache per departure;
- between joins and departures a step appends one column, as ``DynamicCache`` always does.

So each row attends over as many columns as the longest row has tokens; padded columns
are masked out (their weight is exactly 0), and each row's position ids count only its
real tokens. Results match the row decoded alone up to the last bits of floating-point
reductions whose shapes differ (see the tests).

Sliding-window layers (Mistral with ``sliding_window``, Gemma 2 and 3 alternating local and
global layers) are held the same way: transformers' ``DynamicSlidingWindowLayer`` keeps only
the last ``sliding_window - 1`` columns, one count of tokens for all rows, which a left-padded
batch whose rows have different lengths cannot share. So every layer here is a full,
non-evicting ``DynamicLayer``, and the window is applied by the model's own mask: with every
layer full, ``create_sliding_window_causal_mask`` sizes its mask over all columns (offset 0)
and keeps key column ``k`` for query column ``q`` when ``q - window < k <= q``; as each row's
real tokens are contiguous and end in the last column, column distance is token distance, so
that is the row's own window, and padding columns are masked as for full layers. The cost is
memory and time: a sliding layer keeps a row's whole history (as long as the longest row)
instead of ``window - 1`` columns, so the cache is as large as if every layer were global, and
attention in those layers reads (masked) columns outside the window. Past the window that is
up to 1 / (share of global layers) times transformers' own cache as contexts grow: 2x for
Gemma 2 (half its layers slide, window 4096), 6x for Gemma 3 (five local layers to one global,
window 1024 or 512); for an all-sliding Mistral the total is the full context's KV instead of
at most a window's per row. Nothing changes for rows shorter than the window.

Models with other layer kinds are refused: chunked attention (Llama 4) starts its chunks at
absolute positions, which columns of a padded row are not; linear-attention and state-space
layers keep a recurrent state that would take in the padding; indexed or compressed layers
keep state this module does not pad or select.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from transformers import DynamicCache, PretrainedConfig
from transformers.cache_utils import DynamicLayer, get_layer_types_and_kwargs

# Layer kinds (as transformers' ``DynamicCache`` names them) that the padded layout holds,
# each as a full ``DynamicLayer``: the model's masks apply a sliding window (see above).
SUPPORTED_LAYER_TYPES = frozenset({"full_attention", "sliding_attention"})


def new_cache(config: PretrainedConfig) -> DynamicCache:
    """An empty cache for ``config``, all layers full; ValueError for layers the padded layout cannot hold."""
    layer_types, _ = get_layer_types_and_kwargs(config.get_text_config(decoder=True))
    unsupported = set(layer_types) - SUPPORTED_LAYER_TYPES
    if unsupported:
        raise ValueError(
            "the hf engine serves full- and sliding-window-attention layers only; "
            f"this model has {', '.join(sorted(unsupported))} layers"
        )
    cache = DynamicCache(config=config)
    # Sliding layers too: transformers would evict columns outside the window, for all rows at once.
    cache.layers = [DynamicLayer() for _ in cache.layers]
    return cache


class PaddedKVBatch:
    """A left-padded KV cache and its attention mask; rows are indexed as in the running batch."""

    def __init__(self, config: PretrainedConfig, cache: DynamicCache, mask: torch.Tensor) -> None:
        self.config = config
        self.cache = cache
        # [rows, length] bool: True where a column holds a real token of that row.
        self.mask = mask

    @classmethod
    def empty(cls, config: PretrainedConfig, device: torch.device) -> PaddedKVBatch:
        return cls(config, new_cache(config), torch.zeros((0, 0), dtype=torch.bool, device=device))

    @property
    def rows(self) -> int:
        return self.mask.shape[0]

    def mask_with_new_column(self) -> torch.Tensor:
        """The attention mask for a step that appends one real token to every row."""
        return torch.cat([self.mask, self.mask.new_ones((self.rows, 1))], dim=1)

    def stepped(self, step_mask: torch.Tensor) -> None:
        """Record that a forward pass with ``step_mask`` appended its column to the cache."""
        self.mask = step_mask

    def select(self, rows: Sequence[int]) -> None:
        """Keep only ``rows``, in that order (repeating one copies it), then trim all-padding columns."""
        if list(rows) == list(range(self.rows)):
            return
        if not rows:
            self.cache, self.mask = new_cache(self.config), self.mask[:0, :0]
            return
        index = torch.tensor(list(rows), dtype=torch.long, device=self.mask.device)
        mask = self.mask.index_select(0, index)
        # Every row has at least one real token, so some column is real.
        first = int(mask.any(dim=0).nonzero()[0])
        self.mask = mask[:, first:]
        self.cache = self._rebuilt(
            (
                layer.keys.index_select(0, index)[:, :, first:],
                layer.values.index_select(0, index)[:, :, first:],
            )
            for layer in self.cache.layers
        )

    def extend(self, other: PaddedKVBatch) -> None:
        """Append ``other``'s rows after this batch's, padding whichever is shorter on the left."""
        if other.rows == 0:
            return
        if self.rows == 0:
            self.cache, self.mask = other.cache, other.mask
            return
        length = max(self.mask.shape[1], other.mask.shape[1])
        self.mask = torch.cat([_pad_left(self.mask, length, dim=1), _pad_left(other.mask, length, dim=1)])
        self.cache = self._rebuilt(
            (
                torch.cat([_pad_left(mine.keys, length, dim=2), _pad_left(theirs.keys, length, dim=2)]),
                torch.cat([_pad_left(mine.values, length, dim=2), _pad_left(theirs.values, length, dim=2)]),
            )
            for mine, theirs in zip(self.cache.layers, other.cache.layers, strict=True)
        )

    def _rebuilt(self, layers: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> DynamicCache:
        cache = new_cache(self.config)
        for layer, (keys, values) in zip(cache.layers, layers, strict=True):
            layer.update(keys, values)
        return cache


def _pad_left(tensor: torch.Tensor, length: int, *, dim: int) -> torch.Tensor:
    missing = length - tensor.shape[dim]
    if missing == 0:
        return tensor
    # F.pad lists (before, after) pairs from the last dimension backwards.
    pairs = [0, 0] * (tensor.dim() - 1 - dim) + [missing, 0]
    return F.pad(tensor, pairs)
