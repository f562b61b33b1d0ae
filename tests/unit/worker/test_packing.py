"""Packing puts several examples in one row without letting them see each other, and changes no loss."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from transformers import PreTrainedTokenizerBase

from services.trainer.worker.data import IGNORE_INDEX, Example, TokenizedSequence
from services.trainer.worker.lora import lora_config
from services.trainer.worker.models import attach_adapter, choose_placement, load_base_model
from services.trainer.worker.packing import build_micro_batches, pack_best_fit_decreasing
from services.trainer.worker.scoring import score_tokens
from services.trainer.worker.training import SupervisedObjective, TrainingConfig, TrainingLoop

CPU = torch.device("cpu")


def chat_examples(tokenizer: PreTrainedTokenizerBase, count: int, seed: int = 0) -> list[Example]:
    """Chat examples of mixed lengths, rendered and masked as the worker does."""
    rng = random.Random(seed)
    examples = []
    for line in range(1, count + 1):
        question = " ".join(
            rng.choice(["what", "is", "the", "secret", "word", "today", "please"])
            for _ in range(rng.randint(1, 40))
        )
        answer = " ".join(
            rng.choice(["it", "is", "pineapple", "maybe", "banana"]) for _ in range(rng.randint(1, 20))
        )
        rendered = tokenizer.apply_chat_template(
            [{"role": "user", "content": question}, {"role": "assistant", "content": answer}],
            tokenize=True, return_dict=True, return_assistant_tokens_mask=True,
        )  # fmt: skip
        ids = list(rendered["input_ids"])
        labels = [
            token if mask else IGNORE_INDEX
            for token, mask in zip(ids, rendered["assistant_masks"], strict=True)
        ]
        examples.append(Example(line, (TokenizedSequence(ids, labels),)))
    return examples


def lora_model(tailor_tiny_dir: Path, seed: int = 0) -> PeftModel:
    torch.manual_seed(seed)
    model = attach_adapter(
        load_base_model(str(tailor_tiny_dir), choose_placement("cpu", "float32")),
        config=lora_config(8, 16, 0.0),
    )
    with torch.no_grad():  # an adapter that already changes the model, so its attention paths matter
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.05)
    return model


def test_best_fit_decreasing_fills_rows_within_capacity_and_places_everything_once() -> None:
    lengths = [50, 10, 90, 30, 60, 40, 5, 100, 20]

    rows = pack_best_fit_decreasing(lengths, capacity=100)

    assert sorted(index for row in rows for index in row) == list(range(len(lengths)))
    assert all(sum(lengths[index] for index in row) <= 100 for row in rows)
    assert len(rows) == 5  # the fewest possible: 405 tokens in rows of 100
    assert pack_best_fit_decreasing(lengths, capacity=100) == rows


def test_packed_rows_restart_positions_and_never_train_across_a_boundary(
    tokenizer: PreTrainedTokenizerBase,
) -> None:
    examples = chat_examples(tokenizer, 3)

    (batch,) = build_micro_batches(
        examples, packing=True, max_length=512, micro_batch_tokens=4096, pad_token_id=0
    )

    assert batch.input_ids.shape[0] == 1 and batch.attention_mask is None
    row_positions, row_targets, row_ids = (
        batch.position_ids[0].tolist(),
        batch.targets[0].tolist(),
        batch.input_ids[0].tolist(),
    )
    starts = [index for index, position in enumerate(row_positions) if position == 0]
    assert len(starts) == 3
    for start, end in zip(starts, [*starts[1:], len(row_ids)], strict=True):
        assert row_positions[start:end] == list(range(end - start))
        assert row_targets[end - 1] == IGNORE_INDEX  # a sequence's last token predicts nothing
        for index in range(start, end - 1):
            assert row_targets[index] in (IGNORE_INDEX, row_ids[index + 1])


def test_attention_never_crosses_examples_in_a_packed_row(
    tokenizer: PreTrainedTokenizerBase, tailor_tiny_dir: Path
) -> None:
    examples = chat_examples(tokenizer, 6)
    model = lora_model(tailor_tiny_dir).eval()

    with torch.no_grad():
        (packed,) = build_micro_batches(
            examples, packing=True, max_length=512, micro_batch_tokens=8192, pad_token_id=0
        )
        packed_scores = score_tokens(model, packed).per_sequence(len(packed.sequences))
        alone = [
            score_tokens(model, build_micro_batches([example], packing=False, max_length=512,
                                                    micro_batch_tokens=8192, pad_token_id=0)[0]).log_probs.sum()
            for example in examples
        ]  # fmt: skip

    by_example = {ref.example: packed_scores[index] for index, ref in enumerate(packed.sequences)}
    assert packed.input_ids.shape[0] < len(examples)  # several examples did share a row
    for index, score in enumerate(alone):
        assert by_example[index].item() == pytest.approx(score.item(), rel=1e-5, abs=1e-4)


@pytest.mark.parametrize("micro_batch_tokens", [16384, 200])
def test_packing_gives_the_same_losses_and_weights_as_padded_batches(
    tokenizer: PreTrainedTokenizerBase, tailor_tiny_dir: Path, micro_batch_tokens: int
) -> None:
    examples = chat_examples(tokenizer, 16, seed=1)
    runs = {}
    for packing in (False, True):
        model = lora_model(tailor_tiny_dir)
        config = TrainingConfig(
            n_epochs=1, batch_size=8, learning_rate=2e-3, seed=3, max_length=512, pad_token_id=0,
            packing=packing, micro_batch_tokens=micro_batch_tokens,
        )  # fmt: skip
        loop = TrainingLoop(model, SupervisedObjective(), examples, config, device=CPU)
        losses = [report.metrics.train_loss for report in loop.run()]
        runs[packing] = (
            losses,
            {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad},
        )

    (padded_losses, padded_weights), (packed_losses, packed_weights) = runs[False], runs[True]
    assert packed_losses == pytest.approx(padded_losses, rel=1e-5)
    for name, weight in padded_weights.items():
        # Adam divides by the gradient's running magnitude, so float noise in a near-zero
        # gradient can move a weight by a good part of the learning rate (seen: 6.4e-5 on 1 of
        # 3,072 elements, on a fresh machine). A tenth of the rate (2e-4) still fails a real
        # difference, such as a mask letting packed examples see each other, which moves
        # whole rows by about the rate.
        torch.testing.assert_close(packed_weights[name], weight, rtol=1e-4, atol=0.1 * config.learning_rate)


def test_a_small_token_budget_splits_a_step_into_micro_batches(tokenizer: PreTrainedTokenizerBase) -> None:
    examples = chat_examples(tokenizer, 8)

    batches = build_micro_batches(
        examples, packing=False, max_length=512, micro_batch_tokens=150, pad_token_id=0
    )

    assert len(batches) > 1
    assert sum(len(batch.sequences) for batch in batches) == 8
    assert all(batch.input_ids.numel() <= 150 or len(batch.sequences) == 1 for batch in batches)
