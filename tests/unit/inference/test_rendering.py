"""Chat messages through the base model's chat template, and raw prompts, to token ids."""

from __future__ import annotations

import json

import pytest

from services.common.errors import InvalidArgument
from services.inference.rendering import PromptRenderer


def test_chat_is_rendered_with_the_template_and_a_generation_prompt(tokenizer) -> None:  # type: ignore[no-untyped-def]
    ids = PromptRenderer(tokenizer).render_chat(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    )
    assert tokenizer.decode(ids) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )


def test_tools_are_passed_to_the_template(tokenizer) -> None:  # type: ignore[no-untyped-def]
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    ids = PromptRenderer(tokenizer).render_chat([{"role": "user", "content": "Weather?"}], json.dumps(tools))
    assert "get_weather" in tokenizer.decode(ids) and "<tools>" in tokenizer.decode(ids)


def test_a_configured_template_replaces_the_tokenizers(tokenizer) -> None:  # type: ignore[no-untyped-def]
    renderer = PromptRenderer(
        tokenizer, chat_template="{% for m in messages %}[{{ m.content }}]{% endfor %}>"
    )
    assert tokenizer.decode(renderer.render_chat([{"role": "user", "content": "a"}])) == "[a]>"


@pytest.mark.parametrize(
    ("messages", "tools_json", "param"),
    [
        ([], "", "messages"),
        ([{"role": "wizard", "content": "hi"}], "", "messages"),
        ([{"role": "user", "content": "hi"}], "{not json", "tools"),
        ([{"role": "user", "content": "hi"}], '{"type": "function"}', "tools"),
    ],
)
def test_unrenderable_input_is_invalid(tokenizer, messages, tools_json, param) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidArgument) as raised:
        PromptRenderer(tokenizer).render_chat(messages, tools_json)
    assert raised.value.param == param


def test_a_prompt_is_encoded_as_is(tokenizer) -> None:  # type: ignore[no-untyped-def]
    renderer = PromptRenderer(tokenizer)
    assert tokenizer.decode(renderer.render_prompt("Once upon a time")) == "Once upon a time"
    with pytest.raises(InvalidArgument):
        renderer.render_prompt("")
