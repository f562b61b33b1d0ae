"""Direct preference optimisation on LoRA: the base model with its adapter switched off is the reference.

For a pair (prompt, preferred y+, non-preferred y-) the DPO loss (Rafailov et al., 2023; TRL's
``sigmoid`` loss) is

    -log sigmoid(beta * ((log p(y+) - log p_ref(y+)) - (log p(y-) - log p_ref(y-))))

where ``log p(y)`` sums the log-probabilities of the final assistant message's tokens. With LoRA
the reference needs no second model: it is the same network with the adapter disabled, and a
fresh adapter starts equal to it (LoRA's B matrices start at zero). A job continuing an ``ft:``
adapter is therefore still regularised towards the base model, as in TRL with PEFT.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from peft import PeftModel

from services.trainer.worker.data import Example
from services.trainer.worker.packing import MicroBatch
from services.trainer.worker.scoring import score_tokens
from services.trainer.worker.training import BatchStats

PREFERRED, NON_PREFERRED = 0, 1


class PreferenceObjective:
    """DPO's sigmoid loss, averaged over the pairs of a step; ``beta`` is the KL penalty strength."""

    preference = True

    def __init__(self, beta: float) -> None:
        self.beta = beta

    def loss_denominator(self, examples: Sequence[Example]) -> float:
        return len(examples)

    def forward(self, model: PeftModel, batch: MicroBatch) -> tuple[torch.Tensor, BatchStats]:
        policy = score_tokens(model, batch)
        with torch.no_grad(), model.disable_adapter():
            reference = score_tokens(model, batch)
        num_sequences = len(batch.sequences)
        policy_sums = policy.per_sequence(num_sequences)
        reference_sums = reference.per_sequence(num_sequences)

        # The sequences of each pair, in example order (a micro-batch always holds both).
        preferred = _indices(batch, PREFERRED)
        non_preferred = _indices(batch, NON_PREFERRED)
        log_ratios = policy_sums - reference_sums
        margins = self.beta * (log_ratios[preferred] - log_ratios[non_preferred])
        losses = -F.logsigmoid(margins)
        loss_sum = losses.sum()

        # Token accuracy on the preferred outputs: how well the model writes the answer it should prefer.
        on_preferred = torch.isin(policy.sequence_ids, preferred)
        return loss_sum, BatchStats(
            loss_sum=loss_sum.item(),
            loss_count=len(preferred),
            correct_tokens=int(policy.correct[on_preferred].sum()),
            scored_tokens=int(on_preferred.sum()),
            reward_margin_sum=margins.detach().sum().item(),
        )


def _indices(batch: MicroBatch, role: int) -> torch.Tensor:
    ordered = sorted(
        (ref.example, index) for index, ref in enumerate(batch.sequences) if ref.sequence == role
    )
    return torch.tensor([index for _, index in ordered], dtype=torch.long, device=batch.input_ids.device)
