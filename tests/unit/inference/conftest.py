"""Fixtures for the inference unit tests: tailor-tiny's tokenizer, and a tiny random Llama."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def _few_threads() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tokenizer():  # type: ignore[no-untyped-def]
    """tailor-tiny's byte-level BPE tokenizer with its ChatML template (trained in about a second)."""
    from services.common.tailor_tiny.build import build_tokenizer

    return build_tokenizer()


@pytest.fixture(scope="session")
def mistral_tokenizer():  # type: ignore[no-untyped-def]
    """tiny-mistral's tokenizer: Mistral v0.3's control tokens, [TOOL_CALLS] special among them."""
    from services.common.tiny_models import TINY_MODELS

    return TINY_MODELS["tiny-mistral"].build_tokenizer()


@pytest.fixture(scope="session")
def tiny_llama():  # type: ignore[no-untyped-def]
    """A randomly initialised two-layer Llama, small enough to run in milliseconds."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=300,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=256,
    )
    return LlamaForCausalLM(config).eval()
