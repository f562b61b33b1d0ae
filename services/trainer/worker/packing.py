"""From a step's examples to model inputs: micro-batches of padded rows, or of packed rows.

A training step takes ``batch_size`` examples. They are split into micro-batches of whole
examples (at most ``micro_batch_tokens`` tokens per forward pass, padding included; a DPO pair
always stays together), and each micro-batch is laid out in rows:

- **padded**: one sequence per row, right-padded to the longest, with a 2-D attention mask;
- **packed**: sequences placed best-fit-decreasing into rows of at most ``max_length`` tokens.
  Position ids restart at 0 for every sequence, and no attention mask is passed: transformers
  then derives a block-diagonal causal mask from the position ids
  (``masking_utils.find_packed_sequence_indices``), for sdpa, eager and flash attention alike, so
  no token attends across a sequence boundary. The padding at a row's end restarts its positions
  too, so it forms a block of its own.

Targets are shifted per sequence before packing (``targets[i]`` is the token after position
``i``), so a sequence's last token never learns to predict the next sequence's first. Both
layouts hold the same trained tokens, so a step's loss is the same either way; packing only
stops computing padding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch

from services.trainer.worker.data import IGNORE_INDEX, Example, TokenizedSequence


@dataclass(frozen=True)
class SequenceRef:
    """Which example of the step (and which of its sequences) a packed sequence came from."""

    example: int
    sequence: int


@dataclass(frozen=True)
class MicroBatch:
    """One forward pass: ``rows x length`` tensors and where each sequence sits in them.

    ``sequence_ids[r, i]`` is the index in ``sequences`` of the sequence that position belongs
    to, -1 for padding. ``attention_mask`` is None for packed rows (see the module docstring).
    """

    input_ids: torch.Tensor
    targets: torch.Tensor
    position_ids: torch.Tensor
    sequence_ids: torch.Tensor
    attention_mask: torch.Tensor | None
    sequences: tuple[SequenceRef, ...]
    num_input_tokens: int

    def to(self, device: torch.device) -> MicroBatch:
        """The same micro-batch with its tensors on ``device``."""
        return replace(
            self,
            input_ids=self.input_ids.to(device, non_blocking=True),
            targets=self.targets.to(device, non_blocking=True),
            position_ids=self.position_ids.to(device, non_blocking=True),
            sequence_ids=self.sequence_ids.to(device, non_blocking=True),
            attention_mask=None
            if self.attention_mask is None
            else self.attention_mask.to(device, non_blocking=True),
        )


def shifted_targets(labels: Sequence[int]) -> list[int]:
    """What each position is trained to predict: the next token's label; nothing after the last."""
    return [*labels[1:], IGNORE_INDEX]


def pack_best_fit_decreasing(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Indices of ``lengths`` grouped into rows of at most ``capacity`` tokens, best fit decreasing.

    Longest first, each into the fullest row it still fits in; a length over ``capacity`` gets
    a row of its own. Ties keep the original order, so the result is deterministic.
    """
    rows: list[list[int]] = []
    free: list[int] = []
    for index in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        fitting = [row for row, space in enumerate(free) if space >= lengths[index]]
        if fitting:
            best = min(fitting, key=lambda row: free[row])
            rows[best].append(index)
            free[best] -= lengths[index]
        else:
            rows.append([index])
            free.append(capacity - lengths[index])
    return rows


def build_micro_batches(
    examples: Sequence[Example],
    *,
    packing: bool,
    max_length: int,
    micro_batch_tokens: int,
    pad_token_id: int,
) -> list[MicroBatch]:
    """Lay out a step's examples as micro-batches (see the module docstring).

    Examples join the current micro-batch, in order, while its estimated cost (rows x row
    length) stays within ``micro_batch_tokens``; one example over the budget goes alone.
    """
    micro_batches = []
    group: list[int] = []
    for index in range(len(examples)):
        if (
            group
            and _estimated_cost([examples[i] for i in (*group, index)], packing, max_length)
            > micro_batch_tokens
        ):
            micro_batches.append(_collate(examples, group, packing, max_length, pad_token_id))
            group = []
        group.append(index)
    if group:
        micro_batches.append(_collate(examples, group, packing, max_length, pad_token_id))
    return micro_batches


def _estimated_cost(examples: Sequence[Example], packing: bool, max_length: int) -> int:
    """Tokens one forward pass over ``examples`` computes, padding included.

    For packed rows this is the ideal packing (every row full but the last); best fit
    decreasing comes close to it, and computing the real packing for every candidate would
    cost more than it saves.
    """
    lengths = [len(sequence) for example in examples for sequence in example.sequences]
    if not packing:
        return len(lengths) * max(lengths)
    total = sum(lengths)
    return -(-total // max_length) * min(total, max_length)


def _sequences(examples: Sequence[Example], group: list[int]) -> list[tuple[SequenceRef, TokenizedSequence]]:
    return [
        (SequenceRef(example, position), sequence)
        for example in group
        for position, sequence in enumerate(examples[example].sequences)
    ]


def _collate(
    examples: Sequence[Example], group: list[int], packing: bool, max_length: int, pad_token_id: int
) -> MicroBatch:
    sequences = _sequences(examples, group)
    if packing:
        rows = pack_best_fit_decreasing([len(sequence) for _, sequence in sequences], max_length)
    else:
        rows = [[index] for index in range(len(sequences))]
    length = max(sum(len(sequences[index][1]) for index in row) for row in rows)
    shape = (len(rows), length)
    input_ids = torch.full(shape, pad_token_id, dtype=torch.long)
    targets = torch.full(shape, IGNORE_INDEX, dtype=torch.long)
    position_ids = torch.zeros(shape, dtype=torch.long)
    sequence_ids = torch.full(shape, -1, dtype=torch.long)
    attention_mask = None if packing else torch.zeros(shape, dtype=torch.long)

    for row, members in enumerate(rows):
        offset = 0
        for index in members:
            sequence = sequences[index][1]
            end = offset + len(sequence)
            input_ids[row, offset:end] = torch.tensor(sequence.input_ids)
            targets[row, offset:end] = torch.tensor(shifted_targets(sequence.labels))
            position_ids[row, offset:end] = torch.arange(len(sequence))
            sequence_ids[row, offset:end] = index
            offset = end
        if attention_mask is None:
            # Padding restarts its positions, so it is a block of its own and no sequence attends to it.
            position_ids[row, offset:] = torch.arange(length - offset)
        else:
            attention_mask[row, :offset] = 1
            position_ids[row, offset:] = torch.arange(offset, length)

    return MicroBatch(
        input_ids=input_ids,
        targets=targets,
        position_ids=position_ids,
        sequence_ids=sequence_ids,
        attention_mask=attention_mask,
        sequences=tuple(ref for ref, _ in sequences),
        num_input_tokens=sum(len(sequence) for _, sequence in sequences),
    )
