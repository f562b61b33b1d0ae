"""Training tailor-tiny on the CPU: it learns, it is reproducible, it resumes exactly, and DPO prefers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from peft import PeftModel
from transformers import PreTrainedTokenizerBase

from services.trainer.worker.checkpoints import load_state, save_state
from services.trainer.worker.data import Example, load_examples
from services.trainer.worker.dpo import PreferenceObjective
from services.trainer.worker.lora import lora_config
from services.trainer.worker.models import attach_adapter, choose_placement, load_base_model, load_tokenizer
from services.trainer.worker.training import Objective, SupervisedObjective, TrainingConfig, TrainingLoop
from tests.integration.worker.conftest import (
    HELD_OUT_PROMPT,
    SECRET_REPLY,
    preference_examples,
    secret_examples,
)

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tokenizer(tailor_tiny_dir: Path) -> PreTrainedTokenizerBase:
    return load_tokenizer(str(tailor_tiny_dir))


def examples_of(
    tmp_path: Path, tokenizer: PreTrainedTokenizerBase, records: list[Any], *, preference: bool = False
) -> list[Example]:
    path = tmp_path / "examples.jsonl"
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return load_examples(
        path, tokenizer, preference=preference, max_length=512, file_param="training_file"
    ).examples


def fresh_model(tailor_tiny_dir: Path, *, seed: int, dropout: float = 0.0) -> PeftModel:
    torch.manual_seed(seed)
    base = load_base_model(str(tailor_tiny_dir), choose_placement("cpu", "float32"))
    return attach_adapter(base, config=lora_config(8, 16, dropout))


def training_loop(
    model: PeftModel, examples: list[Example], objective: Objective | None = None, **config: Any
) -> TrainingLoop:
    settings = {"n_epochs": 2, "batch_size": 4, "learning_rate": 2e-3, "seed": 11, "max_length": 512, "pad_token_id": 0,
                "warmup_steps": 2, **config}  # fmt: skip
    return TrainingLoop(
        model, objective or SupervisedObjective(), examples, TrainingConfig(**settings), device=CPU
    )


def reply(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, prompt: str) -> str:
    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    return tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)


def test_training_lowers_the_loss_and_teaches_a_reply_the_base_model_does_not_give(
    tmp_path: Path, tokenizer: PreTrainedTokenizerBase, tailor_tiny_dir: Path
) -> None:
    examples = examples_of(tmp_path, tokenizer, secret_examples())
    model = fresh_model(tailor_tiny_dir, seed=0)
    loop = training_loop(model, examples, n_epochs=8)
    before = loop.evaluate(examples)

    losses = [report.metrics.train_loss for report in loop.run()]

    after = loop.evaluate(examples)
    assert after.loss < before.loss - 1.0
    assert after.accuracy == 1.0
    assert losses[-1] < losses[0]
    model.eval()
    assert reply(model, tokenizer, HELD_OUT_PROMPT) == SECRET_REPLY  # a prompt it was not trained on
    with model.disable_adapter():
        assert reply(model, tokenizer, HELD_OUT_PROMPT) != SECRET_REPLY


def test_the_same_seed_gives_the_same_losses_and_a_resumed_run_continues_the_same_curve(
    tmp_path: Path, tokenizer: PreTrainedTokenizerBase, tailor_tiny_dir: Path
) -> None:
    examples = examples_of(tmp_path, tokenizer, secret_examples(10))
    # Dropout draws from the RNG on every step, so only a faithful RNG restore keeps the curve.
    uninterrupted = [
        r.metrics.train_loss
        for r in training_loop(fresh_model(tailor_tiny_dir, seed=0, dropout=0.1), examples).run()
    ]

    first = training_loop(fresh_model(tailor_tiny_dir, seed=0, dropout=0.1), examples)
    first_epoch = []
    for report in first.run():
        first_epoch.append(report.metrics.train_loss)
        if report.end_of_epoch:
            break
    state_dir = save_state(tmp_path / "state", {"loop": first.state_dict()})

    # a new process would start from a differently initialised adapter: the state must override it
    resumed = training_loop(fresh_model(tailor_tiny_dir, seed=99, dropout=0.1), examples)
    resumed.load_state_dict(load_state(state_dir)["loop"])
    second_epoch = [report.metrics.train_loss for report in resumed.run()]

    assert len(first_epoch) == 3 and len(second_epoch) == 3
    assert first_epoch == uninterrupted[:3]  # same seed and data: the same losses, exactly
    assert second_epoch == pytest.approx(uninterrupted[3:], rel=1e-6)
    assert resumed.trained_tokens == sum(example.num_tokens for example in examples) * 2


def test_dpo_raises_the_margin_of_the_preferred_over_the_non_preferred_output(
    tmp_path: Path, tokenizer: PreTrainedTokenizerBase, tailor_tiny_dir: Path
) -> None:
    pairs = examples_of(tmp_path, tokenizer, preference_examples(8), preference=True)
    loop = training_loop(
        fresh_model(tailor_tiny_dir, seed=0), pairs, PreferenceObjective(beta=0.1), n_epochs=4
    )
    before = loop.evaluate(pairs)

    reports = list(loop.run())

    after = loop.evaluate(pairs)
    assert before.reward_margin == pytest.approx(0.0, abs=1e-6)  # a fresh adapter is the reference
    assert before.loss == pytest.approx(0.6931, abs=1e-3)  # -log sigmoid(0)
    assert after.reward_margin > 0.5
    assert after.loss < before.loss
    assert reports[-1].metrics.reward_margin is not None and reports[-1].metrics.reward_margin > 0


def test_gradient_checkpointing_changes_no_loss(
    tmp_path: Path, tokenizer: PreTrainedTokenizerBase, tailor_tiny_dir: Path
) -> None:
    examples = examples_of(tmp_path, tokenizer, secret_examples(8))
    runs = []
    for gradient_checkpointing in (False, True):
        torch.manual_seed(0)
        base = load_base_model(str(tailor_tiny_dir), choose_placement("cpu", "float32"))
        model = attach_adapter(
            base, config=lora_config(8, 16, 0.0), gradient_checkpointing=gradient_checkpointing
        )
        runs.append(
            [report.metrics.train_loss for report in training_loop(model, examples, n_epochs=1).run()]
        )

    assert runs[1] == pytest.approx(runs[0], rel=1e-5)
