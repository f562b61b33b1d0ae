"""What a request asks to continue, as token ids: chat messages through the chat template, or a prompt.

Both engines take token ids, so prompts are rendered and counted in one place, with the
base model's tokenizer. Chat messages go through the base model's chat template (or the
one configured for it) with ``add_generation_prompt``, and the rendered text is encoded
without adding special tokens: the template already wrote them. A raw prompt is encoded
as the tokenizer does by default (a BOS token where the model wants one). This is what
vLLM's OpenAI server does for ``/v1/chat/completions`` and ``/v1/completions``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from services.common.errors import InvalidArgument

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


class PromptRenderer:
    """Turns chat messages or a prompt into the token ids an engine generates from."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, chat_template: str | None = None) -> None:
        self.tokenizer = tokenizer
        # None: the tokenizer's own template.
        self.chat_template = chat_template

    def render_chat(self, messages: Sequence[Mapping[str, Any]], tools_json: str = "") -> list[int]:
        """Token ids of the conversation followed by the assistant's generation prompt."""
        if not messages:
            raise InvalidArgument("messages must not be empty", param="messages")
        tools = _parse_tools(tools_json)
        from jinja2 import TemplateError

        try:
            text = self.tokenizer.apply_chat_template(
                [dict(message) for message in messages],
                tools=tools,
                chat_template=self.chat_template,
                add_generation_prompt=True,
                tokenize=False,
            )
        except TemplateError as error:
            # The template's own raise_exception: an unknown role, a misplaced system message...
            raise InvalidArgument(f"messages cannot be rendered: {error}", param="messages") from None
        return self.tokenizer(text, add_special_tokens=False).input_ids

    def render_prompt(self, prompt: str) -> list[int]:
        """Token ids of a raw prompt."""
        if not prompt:
            raise InvalidArgument("prompt must not be empty", param="prompt")
        return self.tokenizer(prompt).input_ids


def _parse_tools(tools_json: str) -> list[dict[str, Any]] | None:
    if not tools_json:
        return None
    try:
        tools = json.loads(tools_json)
    except ValueError:
        raise InvalidArgument("tools must be a JSON array of tool definitions", param="tools") from None
    if not isinstance(tools, list) or not all(isinstance(tool, dict) for tool in tools):
        raise InvalidArgument("tools must be a JSON array of tool definitions", param="tools")
    return tools or None
