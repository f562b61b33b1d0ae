"""How well the model predicts the trained tokens of a micro-batch, without the full logits.

Projecting every position onto the vocabulary (``tokens x vocab`` logits, in float32 for a
stable softmax) is the largest activation of LoRA training on a big-vocabulary model. Here the
backbone's hidden states are kept only at the positions that have a target, and the LM head
runs on them in chunks under activation checkpointing: the backward pass recomputes one chunk's
logits at a time, so at most one chunk of logits is alive. TRL's fused LM head serves the same
purpose.

Both objectives (:mod:`.training` for SFT, :mod:`.dpo`) build their losses from
:func:`score_tokens`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from peft import PeftModel
from torch.utils.checkpoint import checkpoint

from services.trainer.worker.data import IGNORE_INDEX
from services.trainer.worker.packing import MicroBatch

# Positions projected onto the vocabulary at once: 4096 x 150k float32 logits are 2.4 GiB.
LOGITS_CHUNK_TOKENS = 4096


@dataclass(frozen=True)
class TokenScores:
    """One entry per trained position of a micro-batch, in row-major order."""

    log_probs: torch.Tensor  # log-probability of the target token (differentiable)
    correct: torch.Tensor  # whether the target was the model's top prediction
    sequence_ids: torch.Tensor  # index of the position's sequence in ``MicroBatch.sequences``

    def per_sequence(self, num_sequences: int) -> torch.Tensor:
        """Sum of log-probabilities of each sequence's trained tokens."""
        sums = torch.zeros(num_sequences, dtype=self.log_probs.dtype, device=self.log_probs.device)
        return sums.index_add(0, self.sequence_ids, self.log_probs)


def score_tokens(model: PeftModel, batch: MicroBatch) -> TokenScores:
    """Score ``batch``'s targets under ``model`` (with whatever adapter state is active)."""
    causal_lm = model.get_base_model()
    backbone = getattr(causal_lm, causal_lm.base_model_prefix)
    hidden = backbone(
        input_ids=batch.input_ids,
        attention_mask=batch.attention_mask,
        position_ids=batch.position_ids,
        use_cache=False,
    ).last_hidden_state
    trained = batch.targets != IGNORE_INDEX
    hidden, targets = hidden[trained], batch.targets[trained]

    head = _LogitsHead(causal_lm)
    log_probs, correct = [], []
    # split() yields one empty chunk when nothing is trained, which keeps the loss in the graph.
    for hidden_chunk, target_chunk in zip(
        hidden.split(LOGITS_CHUNK_TOKENS), targets.split(LOGITS_CHUNK_TOKENS), strict=True
    ):
        if torch.is_grad_enabled():
            chunk_log_probs, chunk_correct = checkpoint(head, hidden_chunk, target_chunk, use_reentrant=False)
        else:
            chunk_log_probs, chunk_correct = head(hidden_chunk, target_chunk)
        log_probs.append(chunk_log_probs)
        correct.append(chunk_correct)
    return TokenScores(torch.cat(log_probs), torch.cat(correct), batch.sequence_ids[trained])


class _LogitsHead:
    """The model's output projection (with its logit scaling), scoring hidden states against targets."""

    def __init__(self, causal_lm: torch.nn.Module) -> None:
        self.projection = causal_lm.get_output_embeddings()
        text_config = causal_lm.config.get_text_config()
        # Gemma-style soft-capping and Cohere-style scaling change the logits after the projection.
        self.softcap = getattr(text_config, "final_logit_softcapping", None)
        self.scale = getattr(text_config, "logit_scale", None)

    def __call__(self, hidden: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.projection(hidden).float()
        if self.scale is not None:
            logits = logits * self.scale
        if self.softcap is not None:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        log_probs = -F.cross_entropy(logits, targets, reduction="none")
        return log_probs, logits.argmax(-1) == targets
