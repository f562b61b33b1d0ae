"""LoRA adapters for tests and benchmarks, made with peft on the spot (no trainer service needed).

- :func:`train_fixed_reply_adapter` fits a small LoRA so that tailor-tiny answers any
  user message with one fixed reply (greedy): different adapters are told apart by what
  they say.
- :func:`random_adapter` writes an untrained adapter with non-zero random weights (as
  S-LoRA's benchmark adapters), for shapes and timing rather than meaning.

Both save with ``save_pretrained``: ``adapter_config.json`` + ``adapter_model.safetensors``,
as the training worker does.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch

ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
TRAINING_TOPICS = ["hi", "what is", "tell me about", "question", "please explain", "how do I", "why"]
SHORT_PROMPTS = ["hi", "x", "ok", "hey", "yo", "?", "help", "test"]


def chat_prompt_ids(tokenizer, user_message: str) -> list[int]:  # type: ignore[no-untyped-def]
    """Token ids of a one-message conversation and the assistant's generation prompt."""
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": user_message}], add_generation_prompt=True, tokenize=False
    )
    return tokenizer(text, add_special_tokens=False).input_ids


def train_fixed_reply_adapter(
    base_dir: Path, reply: str, output_dir: Path, *, steps: int = 100, rank: int = 8, seed: int = 0
) -> Path:
    """Train a LoRA on ``base_dir`` that answers every user message with ``reply``; return ``output_dir``."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    config = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=ALL_LINEAR, lora_dropout=0.0, bias="none")
    peft_model = get_peft_model(model, config)
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-2)
    # Decaying to zero settles the few reply tokens instead of leaving them oscillating.
    schedule = torch.optim.lr_scheduler.LinearLR(
        optimizer, start_factor=1.0, end_factor=0.0, total_iters=steps
    )
    reply_ids = tokenizer(reply + tokenizer.eos_token, add_special_tokens=False).input_ids
    prompts = [f"{topic} {number}" for number in range(40) for topic in TRAINING_TOPICS] + SHORT_PROMPTS
    rng = random.Random(seed)
    for _ in range(steps):
        examples = [chat_prompt_ids(tokenizer, prompt) for prompt in rng.sample(prompts, 16)]
        length = max(len(ids) for ids in examples) + len(reply_ids)
        input_ids, labels, mask = [], [], []
        for ids in examples:
            padding = length - len(ids) - len(reply_ids)
            input_ids.append(ids + reply_ids + [tokenizer.pad_token_id] * padding)
            labels.append([-100] * len(ids) + reply_ids + [-100] * padding)
            mask.append([1] * (len(ids) + len(reply_ids)) + [0] * padding)
        loss = peft_model(
            input_ids=torch.tensor(input_ids), attention_mask=torch.tensor(mask), labels=torch.tensor(labels)
        ).loss
        loss.backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
    peft_model.save_pretrained(output_dir)
    return output_dir


def random_adapter(
    base_model: torch.nn.Module,
    output_dir: Path,
    *,
    rank: int = 8,
    seed: int = 0,
    target_modules: list[str] | None = None,
) -> Path:
    """Save an untrained LoRA for ``base_model`` with random, non-zero A and B; return ``output_dir``.

    ``base_model`` is left unchanged (the adapter is injected into a copy of its structure).
    """
    import copy

    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    config = LoraConfig(
        r=rank, lora_alpha=2 * rank, target_modules=target_modules or ALL_LINEAR, init_lora_weights=False
    )
    peft_model = get_peft_model(copy.deepcopy(base_model), config)
    peft_model.save_pretrained(output_dir)
    return output_dir
