"""The left-padded batch cache: rows prefilled apart, merged, stepped and dropped decode as if alone."""

from __future__ import annotations

import torch

from services.inference.kv_batch import PaddedKVBatch, new_cache


def prefill(model, prompts: list[list[int]]) -> tuple[PaddedKVBatch, torch.Tensor]:  # type: ignore[no-untyped-def]
    length = max(len(p) for p in prompts)
    ids = torch.tensor([[0] * (length - len(p)) + p for p in prompts])
    mask = torch.tensor([[False] * (length - len(p)) + [True] * len(p) for p in prompts])
    positions = (mask.long().cumsum(-1) - 1).clamp(min=0)
    batch = PaddedKVBatch(model.config, new_cache(model.config), mask)
    with torch.inference_mode():
        logits = model(
            input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=batch.cache
        ).logits
    return batch, logits[:, -1]


def decode(model, batch: PaddedKVBatch, tokens: list[int], positions: list[int]) -> torch.Tensor:  # type: ignore[no-untyped-def]
    step_mask = batch.mask_with_new_column()
    with torch.inference_mode():
        logits = model(
            input_ids=torch.tensor([[t] for t in tokens]),
            attention_mask=step_mask,
            position_ids=torch.tensor([[p] for p in positions]),
            past_key_values=batch.cache,
        ).logits
    batch.stepped(step_mask)
    return logits[:, -1]


def greedy_alone(model, prompt: list[int], steps: int) -> list[int]:  # type: ignore[no-untyped-def]
    batch, logits = prefill(model, [prompt])
    tokens = [int(logits[0].argmax())]
    for step in range(steps - 1):
        tokens.append(int(decode(model, batch, [tokens[-1]], [len(prompt) + step])[0].argmax()))
    return tokens


def test_rows_joining_and_leaving_decode_as_they_would_alone(tiny_llama) -> None:  # type: ignore[no-untyped-def]
    prompts = [[5, 6, 7, 8, 9, 10, 11], [20, 21], [30, 31, 32, 33]]
    expected = [greedy_alone(tiny_llama, prompt, 8) for prompt in prompts]

    # Row 0 runs alone for three steps; rows 1 and 2 (prefilled together) join; row 1 leaves early.
    batch, logits = prefill(tiny_llama, prompts[:1])
    generated = [[int(logits[0].argmax())], [], []]
    for step in range(3):
        generated[0].append(int(decode(tiny_llama, batch, [generated[0][-1]], [7 + step])[0].argmax()))
    joining, logits = prefill(tiny_llama, prompts[1:])
    generated[1].append(int(logits[0].argmax()))
    generated[2].append(int(logits[1].argmax()))
    batch.extend(joining)
    assert batch.rows == 3 and batch.mask.shape[1] == 10

    active = [0, 1, 2]
    while any(len(generated[row]) < 8 for row in active):
        positions = [len(prompts[row]) + len(generated[row]) - 1 for row in active]
        logits = decode(tiny_llama, batch, [generated[row][-1] for row in active], positions)
        for i, row in enumerate(active):
            generated[row].append(int(logits[i].argmax()))
        finished = [i for i, row in enumerate(active) if len(generated[row]) >= (4 if row == 1 else 8)]
        if finished:
            batch.select([i for i in range(len(active)) if i not in finished])
            active = [row for i, row in enumerate(active) if i not in finished]

    assert generated[0] == expected[0] and generated[2] == expected[2]
    assert generated[1] == expected[1][:4]


def test_dropping_the_longest_row_trims_columns_nobody_needs(tiny_llama) -> None:  # type: ignore[no-untyped-def]
    batch, _ = prefill(tiny_llama, [[1, 2, 3, 4, 5, 6], [7, 8]])
    batch.select([1])
    assert batch.mask.shape == (1, 2) and bool(batch.mask.all())
    assert batch.cache.layers[0].keys.shape[2] == 2


def test_a_row_can_be_copied_for_several_choices(tiny_llama) -> None:  # type: ignore[no-untyped-def]
    batch, _ = prefill(tiny_llama, [[1, 2, 3]])
    batch.select([0, 0, 0])
    assert batch.rows == 3
    assert torch.equal(batch.cache.layers[1].values[0], batch.cache.layers[1].values[2])


def test_dropping_every_row_empties_the_batch(tiny_llama) -> None:  # type: ignore[no-untyped-def]
    batch, _ = prefill(tiny_llama, [[1, 2, 3]])
    batch.select([])
    assert batch.rows == 0
    refilled, _ = prefill(tiny_llama, [[4, 5]])
    batch.extend(refilled)
    assert batch.rows == 1 and batch.mask.shape[1] == 2
