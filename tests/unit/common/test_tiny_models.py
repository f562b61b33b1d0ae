"""The tiny models of real families: deterministic builds, and each chat template writes its family's format.

The expected strings are literal: each is the family's published chat format (Llama 3.1,
Qwen2.5, Mistral v0.3, Gemma 2/3, Phi-4-mini) for the same conversation, as the templates'
headers describe; a change to a template shows here as a changed string.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from services.common.base_models import BaseModelSpec
from services.common.builtin_models import BUILTIN_MODELS
from services.common.model_families import family_of
from services.common.tiny_models import TINY_MODELS

NAMES = sorted(TINY_MODELS)

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather in a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]
CHAT = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "hi"},
    {"role": "assistant", "content": "Hello there"},
    {"role": "user", "content": [{"type": "text", "text": "bye"}]},
]
TOOL_CHAT = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Weather in Lisbon?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_abc123def456",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Lisbon"}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_abc123def456", "content": '{"temp": 21}'},
    {"role": "assistant", "content": "21 degrees."},
]

# CHAT with add_generation_prompt=True, in each family's published format.
EXPECTED_CHAT = {
    "tiny-llama3": (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
        "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\nBe brief.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nHello there<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nbye<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    ),
    "tiny-qwen2.5": (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nhi<|im_end|>\n"
        "<|im_start|>assistant\nHello there<|im_end|>\n"
        "<|im_start|>user\nbye<|im_end|>\n"
        "<|im_start|>assistant\n"
    ),
    # v0.3 writes the system message into the last user turn; the reply follows [/INST] at once.
    "tiny-mistral": "<s>[INST] hi[/INST] Hello there</s>[INST] Be brief.\n\nbye[/INST]",
    # No system role: folded into the first user turn.
    "tiny-gemma2": (
        "<bos><start_of_turn>user\nBe brief.\n\nhi<end_of_turn>\n"
        "<start_of_turn>model\nHello there<end_of_turn>\n"
        "<start_of_turn>user\nbye<end_of_turn>\n"
        "<start_of_turn>model\n"
    ),
    "tiny-phi3": (
        "<|system|>Be brief.<|end|><|user|>hi<|end|><|assistant|>Hello there<|end|><|user|>bye<|end|><|assistant|>"
    ),
}

_TOOL_JSON = (
    '{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city.", '
    '"parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}'
)
_FUNCTION_JSON = (
    '{"name": "get_weather", "description": "Weather in a city.", '
    '"parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}'
)
# TOOL_CHAT with TOOLS, without a generation prompt.
EXPECTED_TOOL_CHAT = {
    "tiny-llama3": (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
        "Environment: ipython\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n"
        "Be brief.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\n"
        "Given the following functions, please respond with a JSON for a function call with its proper "
        "arguments that best answers the given prompt.\n\n"
        'Respond in the format {"name": function name, "parameters": dictionary of argument name and its '
        'value}.Do not use variables.\n\n'
        + json.dumps(TOOLS[0], indent=4)
        + "\n\nWeather in Lisbon?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
        '{"name": "get_weather", "parameters": {"city": "Lisbon"}}<|eot_id|>'
        # Llama 3.1's template JSON-encodes a tool result (its `is iterable` holds for strings).
        '<|start_header_id|>ipython<|end_header_id|>\n\n"{\\"temp\\": 21}"<|eot_id|>'
        "<|start_header_id|>assistant<|end_header_id|>\n\n21 degrees.<|eot_id|>"
    ),
    "tiny-qwen2.5": (
        "<|im_start|>system\nBe brief.\n\n# Tools\n\nYou may call one or more functions to assist with the "
        "user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
        + _TOOL_JSON
        + "\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
        "<tool_call></tool_call> XML tags:\n<tool_call>\n"
        '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|im_end|>\n'
        "<|im_start|>user\nWeather in Lisbon?<|im_end|>\n"
        '<|im_start|>assistant\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Lisbon"}}\n'
        "</tool_call><|im_end|>\n"
        '<|im_start|>user\n<tool_response>\n{"temp": 21}\n</tool_response><|im_end|>\n'
        "<|im_start|>assistant\n21 degrees.<|im_end|>\n"
    ),
    # OpenAI's id call_abc123def456 becomes its last 9 alphanumerics, for the call and its result.
    "tiny-mistral": (
        "<s>[AVAILABLE_TOOLS] [" + _TOOL_JSON + "][/AVAILABLE_TOOLS]"
        "[INST] Be brief.\n\nWeather in Lisbon?[/INST]"
        '[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Lisbon"}, "id": "123def456"}]</s>'
        '[TOOL_RESULTS] {"content": {"temp": 21}, "call_id": "123def456"}[/TOOL_RESULTS]'
        " 21 degrees.</s>"
    ),
    "tiny-gemma2": (
        "<bos><start_of_turn>user\nBe brief.\n\n"
        "You can call functions. To call one, reply with a block per call:\n"
        '```tool_call\n{"name": <function-name>, "arguments": <args-json-object>}\n```\n'
        "The functions, one JSON object per line:\n" + _TOOL_JSON + "\n\n"
        "Weather in Lisbon?<end_of_turn>\n"
        '<start_of_turn>model\n```tool_call\n{"name": "get_weather", "arguments": {"city": "Lisbon"}}\n```'
        "<end_of_turn>\n"
        '<start_of_turn>user\n```tool_output\n{"temp": 21}\n```<end_of_turn>\n'
        "<start_of_turn>model\n21 degrees.<end_of_turn>\n"
    ),
    "tiny-phi3": (
        "<|system|>Be brief.<|tool|>[" + _FUNCTION_JSON + "]<|/tool|><|end|>"
        "<|user|>Weather in Lisbon?<|end|>"
        '<|assistant|><|tool_call|>[{"name": "get_weather", "arguments": {"city": "Lisbon"}}]<|/tool_call|><|end|>'
        '<|tool|>{"temp": 21}<|end|>'
        "<|assistant|>21 degrees.<|end|><|endoftext|>"
    ),
}

# Each family's generation_config.eos_token_id, as tokens, in its published order.
END_TOKENS = {
    "tiny-llama3": ["<|end_of_text|>", "<|eom_id|>", "<|eot_id|>"],
    "tiny-qwen2.5": ["<|im_end|>", "<|endoftext|>"],
    "tiny-mistral": ["</s>"],
    "tiny-gemma2": ["<eos>", "<end_of_turn>"],
    "tiny-phi3": ["<|endoftext|>", "<|end|>"],
}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {name: model.ensure(root) for name, model in TINY_MODELS.items()}


def tokenizer_of(directory: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(directory)


def file_digests(directory: Path) -> dict[str, str]:
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(directory.iterdir())}


def test_every_tiny_model_is_a_builtin_model_source() -> None:
    for name in TINY_MODELS:
        assert BUILTIN_MODELS[name].name == name
        assert BaseModelSpec(source=f"builtin:{name}").is_builtin


def test_importing_the_package_imports_neither_torch_nor_transformers() -> None:
    code = (
        "import sys, services.common.tiny_models, services.common.builtin_models; "
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("name", NAMES)
def test_two_builds_are_the_same_bytes(name: str, built: dict[str, Path], tmp_path: Path) -> None:
    again = TINY_MODELS[name].build(tmp_path / name)
    assert file_digests(again) == file_digests(built[name])
    assert TINY_MODELS[name].is_built(again)


@pytest.mark.parametrize("name", NAMES)
def test_chat_is_rendered_in_the_family_format(name: str, built: dict[str, Path]) -> None:
    tokenizer = tokenizer_of(built[name])
    rendered = tokenizer.apply_chat_template(CHAT, add_generation_prompt=True, tokenize=False)
    assert rendered == EXPECTED_CHAT[name]


@pytest.mark.parametrize("name", NAMES)
def test_tools_calls_and_results_are_rendered_in_the_family_format(name: str, built: dict[str, Path]) -> None:
    tokenizer = tokenizer_of(built[name])
    assert tokenizer.apply_chat_template(TOOL_CHAT, tools=TOOLS, tokenize=False) == EXPECTED_TOOL_CHAT[name]


def test_gemma_folds_a_system_or_developer_message_into_the_first_user_turn(built: dict[str, Path]) -> None:
    tokenizer = tokenizer_of(built["tiny-gemma2"])
    for role in ("system", "developer"):
        conversation = [{"role": role, "content": "  Answer in French. "}, {"role": "user", "content": "hi"}]
        assert tokenizer.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False) == (
            "<bos><start_of_turn>user\nAnswer in French.\n\nhi<end_of_turn>\n<start_of_turn>model\n"
        )
    assert not family_of("gemma2").has_system_role


@pytest.mark.parametrize("name", NAMES)
def test_developer_is_written_as_system(name: str, built: dict[str, Path]) -> None:
    tokenizer = tokenizer_of(built[name])
    as_developer = [{**CHAT[0], "role": "developer"}, *CHAT[1:]]
    assert tokenizer.apply_chat_template(as_developer, add_generation_prompt=True, tokenize=False) == (
        EXPECTED_CHAT[name]
    )


def test_defaults_the_families_write_without_a_system_message(built: dict[str, Path]) -> None:
    user_only = [{"role": "user", "content": "hi"}]
    llama = tokenizer_of(built["tiny-llama3"]).apply_chat_template(user_only, tokenize=False)
    assert llama.startswith(
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
        "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|>"
    )
    qwen = tokenizer_of(built["tiny-qwen2.5"]).apply_chat_template(user_only, tokenize=False)
    assert qwen == (
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nhi<|im_end|>\n"
    )


@pytest.mark.parametrize("name", NAMES)
def test_bos_is_written_once(name: str, built: dict[str, Path]) -> None:
    """Templates that write BOS are rendered without special tokens (as Tailor does): one BOS, not two."""
    tokenizer = tokenizer_of(built[name])
    text = tokenizer.apply_chat_template(CHAT, add_generation_prompt=True, tokenize=False)
    rendered = tokenizer(text, add_special_tokens=False).input_ids
    assert tokenizer.apply_chat_template(CHAT, add_generation_prompt=True, tokenize=True, return_dict=True)[
        "input_ids"
    ] == rendered
    if TINY_MODELS[name].adds_bos:
        assert rendered.count(tokenizer.bos_token_id) == 1 and rendered[0] == tokenizer.bos_token_id
        # plain text gets BOS, as the family's tokenizer gives it
        assert tokenizer("hi").input_ids[0] == tokenizer.bos_token_id
    else:
        assert tokenizer("hi").input_ids == tokenizer("hi", add_special_tokens=False).input_ids


@pytest.mark.parametrize("name", NAMES)
def test_the_loaded_tokenizer_is_the_built_one(name: str, built: dict[str, Path]) -> None:
    """transformers may rebuild a tokenizer on load (Qwen2's): it must split text as the built one does."""
    text = TINY_MODELS[name].build_tokenizer().apply_chat_template(TOOL_CHAT, tools=TOOLS, tokenize=False)
    text += "\n\n  spaced\n\nlines\r\n 123 ümlaut"
    built_ids = TINY_MODELS[name].build_tokenizer()(text, add_special_tokens=False).input_ids
    assert tokenizer_of(built[name])(text, add_special_tokens=False).input_ids == built_ids


# Tool-call markers that are single tokens, and those of them that are special, as in each family's
# published tokenizer: Mistral v0.3's [TOOL_CALLS] is a control token (special), Llama 3.1's
# <|python_tag|> is special (its JSON calls need no marker); Qwen2.5's <tool_call> and Phi-4-mini's
# <|tool_call|> are added tokens that are not special.
MARKER_TOKENS = {
    "tiny-llama3": ({"<|python_tag|>"}, {"<|python_tag|>"}),
    "tiny-qwen2.5": ({"<tool_call>", "</tool_call>"}, set()),
    "tiny-mistral": ({"[TOOL_CALLS]"}, {"[TOOL_CALLS]"}),
    "tiny-gemma2": (set(), set()),
    "tiny-phi3": ({"<|tool_call|>", "<|/tool_call|>"}, set()),
}


@pytest.mark.parametrize("name", NAMES)
def test_tool_call_markers_are_special_where_the_family_has_them_special(
    name: str, built: dict[str, Path]
) -> None:
    """A special marker is dropped by skip_special_tokens: the engines keep it for requests with tools."""
    tokenizer = tokenizer_of(built[name])
    reply = EXPECTED_TOOL_CHAT[name]
    start = {
        "tiny-llama3": '{"name"',
        "tiny-qwen2.5": "<tool_call>",
        "tiny-mistral": "[TOOL_CALLS]",
        "tiny-gemma2": "```tool_call",
        "tiny-phi3": "<|tool_call|>",
    }[name]
    calls = reply[reply.index(start) :]
    calls = calls[: min(calls.index(end) for end in END_TOKENS[name] if end in calls)]
    markers, special = MARKER_TOKENS[name]
    candidates = {"<|python_tag|>", "<tool_call>", "</tool_call>", "[TOOL_CALLS]", "<|tool_call|>"}
    assert (candidates | {"<|/tool_call|>"}) & set(tokenizer.get_vocab()) == markers
    assert {t.content for t in tokenizer.added_tokens_decoder.values() if t.special} & markers == special
    ids = tokenizer(calls, add_special_tokens=False).input_ids
    assert all(tokenizer.convert_tokens_to_ids(marker) in ids for marker in markers if marker in calls)
    assert tokenizer.decode(ids) == calls
    without_special = calls
    for marker in special:
        without_special = without_special.replace(marker, "")
    assert tokenizer.decode(ids, skip_special_tokens=True) == without_special


@pytest.mark.parametrize("name", NAMES)
def test_end_tokens_and_architecture(name: str, built: dict[str, Path]) -> None:
    config = json.loads((built[name] / "config.json").read_text())
    generation = json.loads((built[name] / "generation_config.json").read_text())
    tokenizer = tokenizer_of(built[name])
    assert tokenizer.convert_ids_to_tokens(generation["eos_token_id"]) == END_TOKENS[name]
    assert (config["hidden_size"], config["head_dim"], config["num_hidden_layers"]) == (128, 64, 4)
    assert config["dtype"] == "float32"
    expected = {
        "tiny-llama3": {"model_type": "llama", "tie_word_embeddings": False},
        "tiny-qwen2.5": {"model_type": "qwen2", "tie_word_embeddings": True},
        "tiny-mistral": {"model_type": "mistral", "tie_word_embeddings": False, "sliding_window": 64},
        "tiny-gemma2": {
            "model_type": "gemma2",
            "tie_word_embeddings": True,
            "attn_logit_softcapping": 50.0,
            "final_logit_softcapping": 30.0,
            "sliding_window": 64,
        },
        "tiny-phi3": {"model_type": "phi3", "tie_word_embeddings": True},
    }[name]
    assert {key: config[key] for key in expected} == expected
    if name == "tiny-llama3":
        assert config["rope_parameters"]["rope_theta"] == 500_000.0


def test_architecture_specific_weights(built: dict[str, Path]) -> None:
    from safetensors import safe_open

    def names(name: str) -> set[str]:
        with safe_open(built[name] / "model.safetensors", "pt") as weights:
            return set(weights.keys())

    assert "model.layers.0.self_attn.q_proj.bias" in names("tiny-qwen2.5")  # Qwen2's q/k/v biases
    assert "lm_head.weight" in names("tiny-llama3")  # untied, as Llama 3 8B
    phi = names("tiny-phi3")
    assert {"model.layers.0.self_attn.qkv_proj.weight", "model.layers.0.mlp.gate_up_proj.weight"} <= phi
    with safe_open(built["tiny-gemma2"] / "model.safetensors", "pt") as weights:
        # (1 + weight) norms: the final one multiplies by 8, the others by 1.
        assert weights.get_tensor("model.norm.weight").unique().tolist() == [7.0]
        assert weights.get_tensor("model.layers.0.input_layernorm.weight").unique().tolist() == [0.0]


def test_a_builtin_family_model_is_built_where_its_base_model_resolves(tmp_path: Path) -> None:
    from services.common.base_models import resolve_base_model
    from services.common.settings import CommonSettings

    settings = CommonSettings(
        data_dir=tmp_path, base_models={"phi": BaseModelSpec(source="builtin:tiny-phi3")}
    )
    unbuilt = resolve_base_model("phi", settings, build=False)
    assert not TINY_MODELS["tiny-phi3"].is_built(Path(unbuilt.location))

    resolved = resolve_base_model("phi", settings)

    assert resolved.location == unbuilt.location
    assert Path(resolved.location) == TINY_MODELS["tiny-phi3"].directory(settings.models_dir).absolute()
    assert TINY_MODELS["tiny-phi3"].is_built(Path(resolved.location))
