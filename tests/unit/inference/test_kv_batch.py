"""The left-padded batch cache: rows prefilled apart, merged, stepped and dropped decode as if alone."""

from __future__ import annotations

import pytest
import torch
from transformers.cache_utils import DynamicLayer

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


# Sliding-window models: every layer is kept whole and the model's mask applies the window.

WINDOW = 8
# Gemma 2 twice: with transformers' default sdpa kernel, and eager, as the hf engine loads it (soft-capping).
FAMILIES = ["mistral", "gemma2", "gemma2-eager", "gemma3"]


def tiny_sliding_model(family: str):  # type: ignore[no-untyped-def]
    """A random two-layer Mistral (both layers slide) or Gemma 2 or 3 (one sliding layer, one global)."""
    from transformers import (
        Gemma2Config,
        Gemma2ForCausalLM,
        Gemma3ForCausalLM,
        Gemma3TextConfig,
        MistralConfig,
        MistralForCausalLM,
    )

    torch.manual_seed(0)
    sizes = {
        "vocab_size": 300,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "head_dim": 32,
        "max_position_embeddings": 256,
        "sliding_window": WINDOW,
    }
    if family == "mistral":
        return MistralForCausalLM(MistralConfig(**sizes)).eval()
    if family == "gemma3":  # local layers have their own RoPE base
        layer_types = ["sliding_attention", "full_attention"]
        return Gemma3ForCausalLM(Gemma3TextConfig(**sizes, layer_types=layer_types)).eval()
    config = Gemma2Config(**sizes, attn_logit_softcapping=50.0, final_logit_softcapping=30.0)
    assert config.layer_types == ["sliding_attention", "full_attention"]
    model = Gemma2ForCausalLM(config).eval()
    if family == "gemma2-eager":
        model.set_attn_implementation("eager")
    return model


def generate_alone(model, prompt: list[int], steps: int) -> list[int]:  # type: ignore[no-untyped-def]
    """transformers' own greedy decoding, with its evicting sliding-window cache."""
    with torch.inference_mode():
        output = model.generate(
            input_ids=torch.tensor([prompt]),
            attention_mask=torch.ones((1, len(prompt)), dtype=torch.long),
            max_new_tokens=steps,
            min_new_tokens=steps,
            do_sample=False,
            pad_token_id=0,
        )
    return [int(t) for t in output[0, len(prompt) :]]


@pytest.mark.parametrize("family", FAMILIES)
def test_sliding_window_layers_are_held_whole(family: str) -> None:
    model = tiny_sliding_model(family)
    assert {type(layer) for layer in new_cache(model.config).layers} == {DynamicLayer}
    batch, _ = prefill(model, [list(range(1, 3 * WINDOW))])
    assert all(layer.keys.shape[2] == 3 * WINDOW - 1 for layer in batch.cache.layers)


@pytest.mark.parametrize("family", FAMILIES)
def test_sliding_window_rows_joining_and_leaving_across_the_window_decode_as_generate_alone(
    family: str,
) -> None:
    model = tiny_sliding_model(family)
    # Shorter than the window, across it while decoding, and longer than it from the start.
    prompts = [[5, 6, 7, 8, 9], [20, 21], list(range(30, 30 + 2 * WINDOW + 3))]
    steps = [2 * WINDOW, WINDOW // 2, 2 * WINDOW]
    expected = [generate_alone(model, prompt, n) for prompt, n in zip(prompts, steps, strict=True)]

    # Row 0 runs alone past the window; rows 1 and 2 (prefilled together) join; row 1 leaves early.
    batch, logits = prefill(model, prompts[:1])
    generated: list[list[int]] = [[int(logits[0].argmax())], [], []]
    for step in range(WINDOW):
        position = len(prompts[0]) + step
        generated[0].append(int(decode(model, batch, [generated[0][-1]], [position])[0].argmax()))
    joining, logits = prefill(model, prompts[1:])
    generated[1].append(int(logits[0].argmax()))
    generated[2].append(int(logits[1].argmax()))
    batch.extend(joining)

    active = [0, 1, 2]
    while active:
        positions = [len(prompts[row]) + len(generated[row]) - 1 for row in active]
        logits = decode(model, batch, [generated[row][-1] for row in active], positions)
        for i, row in enumerate(active):
            generated[row].append(int(logits[i].argmax()))
        finished = [i for i, row in enumerate(active) if len(generated[row]) >= steps[row]]
        if finished:
            batch.select([i for i in range(len(active)) if i not in finished])
            active = [row for i, row in enumerate(active) if i not in finished]

    assert generated == expected


@pytest.mark.parametrize("family", FAMILIES)
def test_the_window_is_applied_in_a_padded_batch(family: str) -> None:
    """A padded row longer than the window gets transformers' own logits (not merely their argmax)."""
    model = tiny_sliding_model(family)
    long, short = list(range(40, 40 + 3 * WINDOW)), [7, 8, 9]
    batch, logits = prefill(model, [short, long])
    with torch.inference_mode():
        alone = model(input_ids=torch.tensor([long])).logits[0, -1]
        unwindowed = model(
            input_ids=torch.tensor([long]), attention_mask=_full_causal_mask(len(long))
        ).logits[0, -1]
    assert torch.allclose(logits[1], alone, atol=1e-5)
    assert not torch.allclose(alone, unwindowed, atol=1e-3), "the window must matter for this row"

    stepped = decode(model, batch, [1, 2], [len(short), len(long)])
    with torch.inference_mode():
        reference = model(input_ids=torch.tensor([[*long, 2]])).logits[0, -1]
    assert torch.allclose(stepped[1], reference, atol=1e-5)


def test_layers_the_padded_layout_cannot_hold_are_refused() -> None:
    from transformers import Llama4TextConfig, MambaConfig

    with pytest.raises(ValueError, match="chunked_attention"):  # Llama 4's chunks start at absolute positions
        new_cache(Llama4TextConfig(num_hidden_layers=4))
    with pytest.raises(ValueError, match="linear_attention"):  # a recurrent state would take in the padding
        new_cache(MambaConfig(num_hidden_layers=2))


def _full_causal_mask(length: int) -> torch.Tensor:
    """A 4D additive mask that lets every token see all earlier ones (no window)."""
    blocked = torch.ones((length, length), dtype=torch.bool).triu(diagonal=1)
    return torch.zeros((1, 1, length, length)).masked_fill(blocked, torch.finfo(torch.float32).min)
