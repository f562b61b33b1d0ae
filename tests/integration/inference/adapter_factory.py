"""LoRA adapters for tests and benchmarks, made with peft on the spot (no trainer service needed).

- :func:`train_fixed_reply_adapter` fits a small LoRA so that a base model (tailor-tiny, or
  any model directory: the tiny models of real families) answers any user message with one
  fixed reply (greedy): different adapters are told apart by what
  they say. It trains until a transformers + peft reference gives that reply for every
  prompt in :data:`PROBE_PROMPTS`, so a test comparing an engine's text with the reply
  compares it with the reference's output of this run.
- :func:`reference_greedy` is that reference: transformers' greedy ``generate``.
- :func:`random_adapter` writes an untrained adapter with non-zero random weights (as
  S-LoRA's benchmark adapters), for shapes and timing rather than meaning.

The LoRA targets the base model's family's modules (``model_families``: Phi-3's fused
``qkv_proj``/``gate_up_proj``, the separate projections of the others), read from its config.
All save with ``save_pretrained``: ``adapter_config.json`` + ``adapter_model.safetensors``,
as the training worker does.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch

ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def target_modules_of(base_dir: Path) -> list[str]:
    """The LoRA target modules of the base model's family (by its config's ``model_type``)."""
    import json

    from services.common.model_families import family_of

    model_type = json.loads((Path(base_dir) / "config.json").read_text()).get("model_type")
    modules = family_of(model_type).lora_target_modules
    return ALL_LINEAR if isinstance(modules, str) else list(modules)


def pad_token_id_of(tokenizer) -> int:  # type: ignore[no-untyped-def]
    """The tokenizer's padding token, or its end of sequence where it has none (Mistral, Llama 3)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
TRAINING_TOPICS = ["hi", "what is", "tell me about", "question", "please explain", "how do I", "why"]
SHORT_PROMPTS = ["hi", "x", "ok", "hey", "yo", "?", "help", "test"]


def chat_prompt_ids(  # type: ignore[no-untyped-def]
    tokenizer, user_message: str, tools: list[dict] | None = None
) -> list[int]:
    """Token ids of a one-message conversation (offering ``tools``) and the assistant's generation prompt."""
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": user_message}], tools=tools, add_generation_prompt=True, tokenize=False
    )
    return tokenizer(text, add_special_tokens=False).input_ids


# Every prompt a test sends to a fixed-reply adapter and compares with the reply: the
# fixture checks each of them against the reference before handing the adapter out.
PROBE_PROMPTS = (
    "hi",
    "hey",
    "hello",
    "hello there",
    "a much longer question, please",
    *(f"question {i}" for i in range(20)),
)


class AdapterDidNotLearn(AssertionError):
    """The fixture could not teach its reply within the step budget; says how far it got."""


def reference_greedy(
    base_dir: Path, user_message: str, max_new_tokens: int, adapter_dir: Path | None = None
) -> str:
    """What transformers (+ peft for an adapter) generates greedily: the reference an engine must equal."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    if adapter_dir is not None:
        model = PeftModel.from_pretrained(model, adapter_dir)
    return _greedy_replies(model, tokenizer, [user_message], max_new_tokens)[user_message]


def reference_greedy_tokens(
    base_dir: Path, user_message: str, max_new_tokens: int, adapter_dir: Path | None = None
) -> tuple[str, int]:
    """:func:`reference_greedy`'s text and how many tokens it generated (an end-of-sequence token included)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    if adapter_dir is not None:
        model = PeftModel.from_pretrained(model, adapter_dir)
    model.eval()
    with torch.inference_mode():
        ids = torch.tensor([chat_prompt_ids(tokenizer, user_message)])
        output = model.generate(input_ids=ids, max_new_tokens=max_new_tokens, do_sample=False)[0, ids.shape[1] :]
    return tokenizer.decode(output, skip_special_tokens=True), len(output)


def _greedy_replies(  # type: ignore[no-untyped-def]
    model, tokenizer, prompts, max_new_tokens: int, keep_special: bool = False, tools=None
) -> dict[str, str]:
    """Each prompt's greedy reply; ``keep_special``: with its special tokens, less an end of sequence."""
    model.eval()
    replies = {}
    with torch.inference_mode():
        for prompt in prompts:
            ids = torch.tensor([chat_prompt_ids(tokenizer, prompt, tools)])
            output = model.generate(input_ids=ids, max_new_tokens=max_new_tokens, do_sample=False)
            reply = output[0, ids.shape[1] :].tolist()
            if keep_special and reply and reply[-1] == tokenizer.eos_token_id:
                reply = reply[:-1]
            replies[prompt] = tokenizer.decode(reply, skip_special_tokens=not keep_special)
    return replies


def train_fixed_reply_adapter(
    base_dir: Path,
    reply: str,
    output_dir: Path,
    *,
    steps_per_round: int = 100,
    max_steps: int = 600,
    rank: int = 8,
    seed: int = 0,
    probes: tuple[str, ...] = PROBE_PROMPTS,
    tools: list[dict] | None = None,
    restarts: int = 3,
) -> Path:
    """Train a LoRA on ``base_dir`` that answers every user message with ``reply``; return ``output_dir``.

    How many steps that takes depends on the library versions and the float rounding of
    the machine, so the adapter is not trusted after a fixed count: after every round of
    ``steps_per_round`` steps the saved adapter is reloaded with peft and must answer each
    of ``probes`` with exactly ``reply`` (then end of sequence), greedily. Training goes on,
    up to ``max_steps``; past that :class:`AdapterDidNotLearn` names the loss reached and
    the replies that were wrong, instead of leaving a half-trained adapter to the tests.
    ``tools``: every conversation offers them (in the template's words), as a request with
    tools does; a reply that is a tool call then comes back as one.

    A run can also settle at a low loss with one greedy token wrong (seen: tiny-phi3's tool
    call, `"name": "f", "f", ...` after 1,200 steps at loss 0.007 on one machine's float
    rounding, learnt in 100 steps from another seed): up to ``restarts`` runs start from
    seeds ``seed``, ``seed + 1``, ... before :class:`AdapterDidNotLearn` is raised.
    """
    for attempt in range(restarts):
        try:
            return _train_fixed_reply(base_dir, reply, output_dir, steps_per_round, max_steps, rank,
                                      seed + attempt, probes, tools)  # fmt: skip
        except AdapterDidNotLearn:
            if attempt == restarts - 1:
                raise
    raise AssertionError("unreachable")  # restarts >= 1


def _train_fixed_reply(  # type: ignore[no-untyped-def]
    base_dir: Path,
    reply: str,
    output_dir: Path,
    steps_per_round: int,
    max_steps: int,
    rank: int,
    seed: int,
    probes: tuple[str, ...],
    tools,
) -> Path:
    """One run of :func:`train_fixed_reply_adapter` from ``seed``."""
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    config = LoraConfig(
        r=rank, lora_alpha=2 * rank, target_modules=target_modules_of(base_dir), lora_dropout=0.0, bias="none"
    )
    peft_model = get_peft_model(model, config)
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-2)
    reply_ids = tokenizer(reply + tokenizer.eos_token, add_special_tokens=False).input_ids
    # A reply with special tokens in it (a tool call after Mistral's [TOOL_CALLS]) is checked
    # with them: decoding without them would not say whether the model writes them.
    keep_special = tokenizer.decode(reply_ids, skip_special_tokens=True) != reply
    prompts = [f"{topic} {number}" for number in range(40) for topic in TRAINING_TOPICS] + SHORT_PROMPTS
    rng = random.Random(seed)
    steps_done, wrong = 0, {}
    while steps_done < max_steps:
        # Each round decays to zero, which settles the few reply tokens instead of leaving
        # them oscillating; a further round restarts from the full rate.
        schedule = torch.optim.lr_scheduler.LinearLR(
            optimizer, start_factor=1.0, end_factor=0.0, total_iters=steps_per_round
        )
        peft_model.train()
        for _ in range(steps_per_round):
            loss = _reply_loss(peft_model, tokenizer, rng.sample(prompts, 16), reply_ids, tools)
            loss.backward()
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
        steps_done += steps_per_round
        peft_model.save_pretrained(output_dir)
        reloaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir), output_dir)
        replies = _greedy_replies(
            reloaded, tokenizer, probes, len(reply_ids) + 4, keep_special=keep_special, tools=tools
        )
        wrong = {prompt: got for prompt, got in replies.items() if got != reply}
        if not wrong:
            return output_dir
    raise AdapterDidNotLearn(
        f"after {steps_done} steps (last loss {loss.item():.4f}) the adapter for {reply!r} still "
        f"answered {len(wrong)} of {len(probes)} probe prompts otherwise, e.g. {dict(list(wrong.items())[:3])}"
    )


def _reply_loss(  # type: ignore[no-untyped-def]
    model, tokenizer, batch_prompts: list[str], reply_ids: list[int], tools=None
) -> torch.Tensor:
    """Cross-entropy on the reply tokens only, for a padded batch of one-turn chats."""
    examples = [chat_prompt_ids(tokenizer, prompt, tools) for prompt in batch_prompts]
    length = max(len(ids) for ids in examples) + len(reply_ids)
    input_ids, labels, mask = [], [], []
    for ids in examples:
        padding = length - len(ids) - len(reply_ids)
        input_ids.append(ids + reply_ids + [pad_token_id_of(tokenizer)] * padding)
        labels.append([-100] * len(ids) + reply_ids + [-100] * padding)
        mask.append([1] * (len(ids) + len(reply_ids)) + [0] * padding)
    return model(
        input_ids=torch.tensor(input_ids), attention_mask=torch.tensor(mask), labels=torch.tensor(labels)
    ).loss


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
    ``target_modules`` defaults to those of the model's family.
    """
    import copy

    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    config = LoraConfig(
        r=rank,
        lora_alpha=2 * rank,
        target_modules=target_modules or _family_modules(base_model),
        init_lora_weights=False,
    )
    peft_model = get_peft_model(copy.deepcopy(base_model), config)
    peft_model.save_pretrained(output_dir)
    return output_dir


def _family_modules(model: torch.nn.Module) -> list[str]:
    from services.common.model_families import family_of

    modules = family_of(getattr(getattr(model, "config", None), "model_type", None)).lora_target_modules
    return ALL_LINEAR if isinstance(modules, str) else list(modules)


def train_worker_adapter(
    base_dir: Path,
    output_dir: Path,
    *,
    reply: str,
    seed: int,
    epochs: int = 3,
    rank: int = 8,
    base_model_name: str = "tailor-tiny",
) -> Path:
    """An adapter as the trainer's worker makes one (its data loading, training loop, save): ``output_dir``.

    A short supervised run on chats that answer with ``reply``: enough to move the model's
    outputs away from the base model's (what it says is not checked: tests compare an
    engine with the transformers + peft reference, whatever that answers), and saved with
    the worker's :func:`~services.trainer.worker.lora.save_adapter`, which checks that vLLM
    accepts it.
    """
    import json
    import tempfile

    from services.trainer.worker.data import load_examples
    from services.trainer.worker.lora import lora_config, save_adapter
    from services.trainer.worker.models import (
        attach_adapter,
        choose_placement,
        load_base_model,
        load_tokenizer,
    )
    from services.trainer.worker.training import SupervisedObjective, TrainingConfig, TrainingLoop

    torch.manual_seed(seed)
    tokenizer = load_tokenizer(str(base_dir))
    records = [
        {"messages": [{"role": "user", "content": f"{topic} {n}"}, {"role": "assistant", "content": reply}]}
        for n in range(4)
        for topic in TRAINING_TOPICS
    ]
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "train.jsonl"
        path.write_text("".join(json.dumps(record) + "\n" for record in records))
        examples = load_examples(
            path, tokenizer, preference=False, max_length=512, file_param="training_file"
        ).examples
    base = load_base_model(str(base_dir), choose_placement("cpu", "float32"))
    model = attach_adapter(base, config=lora_config(rank, 2 * rank, 0.0, target_modules_of(base_dir)))
    config = TrainingConfig(
        n_epochs=epochs, batch_size=4, learning_rate=5e-3, seed=seed, max_length=512,
        pad_token_id=pad_token_id_of(tokenizer),
        warmup_steps=2,
    )
    for _ in TrainingLoop(model, SupervisedObjective(), examples, config, device=torch.device("cpu")).run():
        pass
    return save_adapter(model, output_dir, base_model_name=base_model_name, max_rank=rank)
