"""tailor-tiny: builds reproducibly, loads with transformers, runs, and masks assistant tokens.

The model is built once per session (``tailor_tiny_dir``) for the read-only tests; the tests
about building itself build their own copies.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

# Nothing here may reach the Hugging Face hub; huggingface_hub reads this when first imported.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from services.common import tailor_tiny
from services.common.tailor_tiny import build as tailor_tiny_build

REPO_ROOT = Path(__file__).resolve().parents[3]
EXPECTED_FILES = {
    "chat_template.jinja",
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tailor_tiny.json",
    "tokenizer.json",
    "tokenizer_config.json",
}

Message = dict[str, Any]


@pytest.fixture(scope="session")
def tailor_tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tailor_tiny.ensure_tailor_tiny(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def tokenizer(tailor_tiny_dir: Path) -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(tailor_tiny_dir)


@pytest.fixture(scope="session")
def model(tailor_tiny_dir: Path) -> PreTrainedModel:
    return AutoModelForCausalLM.from_pretrained(tailor_tiny_dir).eval()


def file_digests(directory: Path) -> dict[str, str]:
    return {
        path.relative_to(directory).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def leftovers_beside(target: Path) -> list[str]:
    """Temporary build or stale directories the builder left next to ``target``."""
    return sorted(
        path.name for path in target.parent.iterdir() if ".tmp-" in path.name or ".stale-" in path.name
    )


def run_cli(target: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "services.common.tailor_tiny", str(target)],
        cwd=REPO_ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONHASHSEED": "12345"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


# --- building -------------------------------------------------------------------------------


def test_build_produces_the_expected_files(tailor_tiny_dir: Path) -> None:
    assert tailor_tiny_dir.name == f"tailor-tiny-v{tailor_tiny.VERSION}"
    assert {path.name for path in tailor_tiny_dir.iterdir()} == EXPECTED_FILES
    assert tailor_tiny.is_built(tailor_tiny_dir)
    assert leftovers_beside(tailor_tiny_dir) == []


def test_rebuild_into_another_directory_gives_identical_bytes(tailor_tiny_dir: Path, tmp_path: Path) -> None:
    second = tailor_tiny.build_tailor_tiny(tmp_path / "again")
    assert file_digests(second) == file_digests(tailor_tiny_dir)


def test_saved_files_hold_no_paths(tailor_tiny_dir: Path) -> None:
    # Times and machines are covered by builds in other directories, processes and moments
    # coming out byte-identical; this catches a path recorded into a file.
    for path in tailor_tiny_dir.iterdir():
        if path.suffix == ".safetensors":
            content = path.read_bytes()
            content = content[: 8 + int.from_bytes(content[:8], "little")]  # the JSON header
        else:
            content = path.read_bytes()
        assert str(tailor_tiny_dir.parent).encode() not in content, path.name
    config = json.loads((tailor_tiny_dir / "config.json").read_text())
    assert "_name_or_path" not in config


def test_building_an_existing_model_again_changes_nothing(tailor_tiny_dir: Path) -> None:
    before = {path.name: path.stat().st_mtime_ns for path in tailor_tiny_dir.iterdir()}
    assert tailor_tiny.build_tailor_tiny(tailor_tiny_dir) == tailor_tiny_dir
    assert {path.name: path.stat().st_mtime_ns for path in tailor_tiny_dir.iterdir()} == before


@pytest.mark.parametrize("marker", [None, {"name": "tailor-tiny", "version": 0}], ids=["incomplete", "stale"])
def test_a_stale_or_incomplete_directory_is_rebuilt(
    tailor_tiny_dir: Path, tmp_path: Path, marker: dict[str, Any] | None
) -> None:
    target = tmp_path / "tailor-tiny"
    target.mkdir()
    (target / "config.json").write_text("{}")
    if marker is not None:
        (target / tailor_tiny_build.MARKER_FILE).write_text(json.dumps(marker))
    assert not tailor_tiny.is_built(target)

    tailor_tiny.build_tailor_tiny(target)

    assert file_digests(target) == file_digests(tailor_tiny_dir)
    assert leftovers_beside(target) == []


def test_threads_racing_on_one_target_build_it_once(
    tailor_tiny_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "tailor-tiny"
    writes: list[Path] = []
    write_model = tailor_tiny_build._write_model

    def counting_write_model(output_dir: Path) -> None:
        writes.append(output_dir)
        write_model(output_dir)

    monkeypatch.setattr(tailor_tiny_build, "_write_model", counting_write_model)
    start = threading.Barrier(3)
    results: list[Path] = []

    def build() -> None:
        start.wait()
        results.append(tailor_tiny.build_tailor_tiny(target))

    threads = [threading.Thread(target=build) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert results == [target] * 3
    assert len(writes) == 1
    assert file_digests(target) == file_digests(tailor_tiny_dir)
    assert leftovers_beside(target) == []


def test_processes_racing_through_the_cli_end_with_one_identical_model(
    tailor_tiny_dir: Path, tmp_path: Path
) -> None:
    # Separate processes (another hash seed, fresh torch state) must also build the same bytes.
    target = tmp_path / "tailor-tiny"
    processes = [run_cli(target), run_cli(target)]
    outputs = [process.communicate(timeout=120)[0] for process in processes]

    assert [process.returncode for process in processes] == [0, 0], outputs
    assert file_digests(target) == file_digests(tailor_tiny_dir)
    assert leftovers_beside(target) == []


def test_importing_the_package_does_not_import_torch() -> None:
    code = "import sys, services.common.tailor_tiny; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True)


# --- the model ------------------------------------------------------------------------------


def test_model_shape_is_a_small_vanilla_llama(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase
) -> None:
    config = model.config
    parameter_count = sum(parameter.numel() for parameter in model.parameters())
    assert 1_000_000 <= parameter_count <= 2_000_000
    assert config.model_type == "llama"
    assert config.head_dim == 64
    assert config.vocab_size % 64 == 0 and config.vocab_size >= len(tokenizer)
    assert config.max_position_embeddings == 2048
    assert all(parameter.dtype == torch.float32 for parameter in model.parameters())
    assert config.eos_token_id == tokenizer.convert_tokens_to_ids("<|im_end|>")


def test_forward_pass_on_a_padded_batch(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
    batch = tokenizer(["Hello there, how are you?", "Hi"], padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape == (2, batch["input_ids"].shape[1], model.config.vocab_size)
    assert torch.isfinite(logits).all()


def test_generate_a_few_tokens(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Say something."}],
        add_generation_prompt=True,
        return_dict=True,
        return_tensors="pt",
    )
    with torch.no_grad():
        output = model.generate(**prompt, max_new_tokens=5, min_new_tokens=5, do_sample=False)
    assert output.shape == (1, prompt["input_ids"].shape[1] + 5)


# --- the tokenizer --------------------------------------------------------------------------


def test_tokenizer_vocabulary_and_special_tokens(tokenizer: PreTrainedTokenizerBase) -> None:
    assert 2048 <= len(tokenizer) <= 4096
    assert tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]) == [0, 1, 2]
    assert tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.pad_token == "<|endoftext|>"
    assert tokenizer.bos_token is None
    # Nothing is added around plain text, and special tokens are single tokens.
    assert tokenizer("<|im_start|>user\nhi<|im_end|>")["input_ids"][0] == 1
    assert tokenizer("<|im_start|>user\nhi<|im_end|>")["input_ids"][-1] == 2


@pytest.mark.parametrize(
    "text",
    [
        "Hello, world!",
        "  leading and trailing spaces\t\n\n",
        "naïve café, Zürich, Ångström, ½ ≥ ∞",
        "emoji 😀🎉👍🏽 and a family 👨‍👩‍👧 and flags 🇵🇹",
        '{"name": "Lena", "tags": ["a", "b"], "n": 1.5e-3, "ok": null}\n',
        "你好，世界。こんにちは。안녕하세요. مرحبا. Привет.",
        "control \x00\x01\x7f characters and a lone \u200b zero-width space",
    ],
)
def test_tokenizer_round_trips_any_text(tokenizer: PreTrainedTokenizerBase, text: str) -> None:
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text


# --- the chat template and the assistant mask -----------------------------------------------


def assistant_masked(
    tokenizer: PreTrainedTokenizerBase, messages: list[Message], **kwargs: Any
) -> tuple[str, str]:
    """The rendered conversation and the text of the tokens the assistant mask selects."""
    encoded = tokenizer.apply_chat_template(
        messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True, **kwargs
    )
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, **kwargs)
    selected = [
        token
        for token, masked in zip(encoded["input_ids"], encoded["assistant_masks"], strict=True)
        if masked
    ]
    assert tokenizer.decode(encoded["input_ids"]) == rendered
    selected_text = tokenizer.decode(selected)
    # Every reply ends with the special <|im_end|>, so encoding the selected text alone splits
    # into the same tokens: no token straddles the edge of the mask.
    assert tokenizer(selected_text)["input_ids"] == selected
    return rendered, selected_text


def test_single_turn_renders_chatml_and_masks_the_reply(tokenizer: PreTrainedTokenizerBase) -> None:
    messages = [
        {"role": "user", "content": "What is 2 + 2?"},
        {"role": "assistant", "content": "2 + 2 = 4."},
    ]
    rendered, masked = assistant_masked(tokenizer, messages)
    assert rendered == (
        "<|im_start|>user\nWhat is 2 + 2?<|im_end|>\n<|im_start|>assistant\n2 + 2 = 4.<|im_end|>\n"
    )
    assert masked == "2 + 2 = 4.<|im_end|>"


@pytest.mark.parametrize(
    "reply", ["\nStarts with a newline", "\n\n  indented", " space first", "\t😀 ends\n\n", ""]
)
def test_mask_edges_are_exact_whatever_the_reply_starts_with(
    tokenizer: PreTrainedTokenizerBase, reply: str
) -> None:
    messages = [{"role": "user", "content": "Go."}, {"role": "assistant", "content": reply}]
    _, masked = assistant_masked(tokenizer, messages)
    assert masked == reply + "<|im_end|>"


def test_multi_turn_masks_every_assistant_reply(tokenizer: PreTrainedTokenizerBase) -> None:
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hi!"},
        {"role": "assistant", "content": "Hello. 👋"},
        {"role": "user", "content": "Capital of Peru?"},
        {"role": "assistant", "content": "Lima."},
    ]
    rendered, masked = assistant_masked(tokenizer, messages)
    assert rendered.startswith("<|im_start|>system\nYou are terse.<|im_end|>\n")
    assert masked == "Hello. 👋<|im_end|>Lima.<|im_end|>"


def test_weight_zero_reply_is_rendered_but_not_masked(tokenizer: PreTrainedTokenizerBase) -> None:
    messages = [
        {"role": "user", "content": "Tell me a joke."},
        {"role": "assistant", "content": "A bad joke.", "weight": 0},
        {"role": "user", "content": "Better, please."},
        {"role": "assistant", "content": "A good joke.", "weight": 1},
    ]
    rendered, masked = assistant_masked(tokenizer, messages)
    assert "<|im_start|>assistant\nA bad joke.<|im_end|>\n" in rendered
    assert masked == "A good joke.<|im_end|>"


def test_tool_calls_are_rendered_and_masked(tokenizer: PreTrainedTokenizerBase) -> None:
    weather_tool = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather in a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
    messages = [
        {"role": "developer", "content": "Use tools when useful."},
        {"role": "user", "content": "Weather in Lisbon?", "name": "ana"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Lisbon"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"celsius": 22}'},
        {"role": "assistant", "content": "22 °C and sunny."},
    ]
    rendered, masked = assistant_masked(tokenizer, messages, tools=[weather_tool])
    tool_call = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Lisbon"}}\n</tool_call>'
    assert masked == f"{tool_call}<|im_end|>22 °C and sunny.<|im_end|>"
    # One system block: the developer message, then the tool list.
    assert rendered.startswith("<|im_start|>system\nUse tools when useful.\n\n# Tools\n")
    assert rendered.count("<|im_start|>system") == 1
    assert json.dumps(weather_tool) in rendered
    assert '<|im_start|>tool\n{"celsius": 22}<|im_end|>\n' in rendered


def test_content_before_tool_calls_is_masked_too(tokenizer: PreTrainedTokenizerBase) -> None:
    messages = [
        {"role": "user", "content": "Add milk to the list."},
        {
            "role": "assistant",
            "content": [{"type": "text", "text": "Adding it."}],
            "tool_calls": [{"type": "function", "function": {"name": "add", "arguments": {"item": "milk"}}}],
        },
    ]
    _, masked = assistant_masked(tokenizer, messages)
    assert (
        masked
        == 'Adding it.\n<tool_call>\n{"name": "add", "arguments": {"item": "milk"}}\n</tool_call><|im_end|>'
    )


def test_generation_prompt_is_appended_and_not_masked(tokenizer: PreTrainedTokenizerBase) -> None:
    messages = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Bye"},
    ]
    rendered, masked = assistant_masked(tokenizer, messages, add_generation_prompt=True)
    assert rendered.endswith("<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n")
    assert masked == "Hello!<|im_end|>"
