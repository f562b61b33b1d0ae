"""Typed examples: what a valid line means, in the form chat templates and trainers take.

:func:`build_example` turns a line that passed the checks of :mod:`.rules` into a
:class:`ChatExample`, :class:`PromptCompletionExample` or :class:`PreferenceExample`. OpenAI's
deprecated function calling becomes the tool calling that replaced it, because chat templates
(tailor-tiny's, and those of the models Tailor fine-tunes) know ``tools``, ``tool_calls`` and
the ``tool`` role, not ``functions``, ``function_call`` and the ``function`` role:

* an assistant's ``function_call`` becomes one more entry of its ``tool_calls``, with an id
  made up in order (``call_0``, ``call_1``, ... within the example);
* a ``function`` message becomes a ``tool`` message (keeping its ``name``) whose ``tool_call_id``
  is the id of the latest call of that function before it;
* ``functions`` definitions become ``tools`` of type ``function``, after any ``tools``.

Messages are handed on as the JSON objects they are (``weight`` included, which tailor-tiny's
template reads); nothing here copies a line that needs no change.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

Message = dict[str, Any]
Tool = dict[str, Any]


class ExampleFormat(enum.StrEnum):
    """The shape of a fine-tuning file's examples (one shape per file)."""

    CHAT = "chat"
    PROMPT_COMPLETION = "prompt_completion"
    PREFERENCE = "preference"

    @property
    def label(self) -> str:
        """The name users read: ``chat``, ``prompt/completion``, ``preference``."""
        return self.value.replace("_", "/")


@dataclass(frozen=True, slots=True)
class ChatExample:
    """A conversation, trained on each assistant message whose ``weight`` is not 0."""

    messages: list[Message]
    tools: list[Tool] | None

    @property
    def assistant_weights(self) -> list[int | float]:
        """The weight (0 or 1) of each assistant message, in order."""
        return [message.get("weight", 1) for message in self.messages if message["role"] == "assistant"]


@dataclass(frozen=True, slots=True)
class PromptCompletionExample:
    """Plain text: the completion (and the end of the sequence after it) is trained."""

    prompt: str
    completion: str


@dataclass(frozen=True, slots=True)
class PreferenceExample:
    """A conversation ending with a user turn, and two replies to it: the preferred one first."""

    messages: list[Message]
    tools: list[Tool] | None
    preferred: Message
    non_preferred: Message

    def conversations(self) -> tuple[list[Message], list[Message]]:
        """The input followed by the preferred reply, and by the non-preferred one."""
        return [*self.messages, self.preferred], [*self.messages, self.non_preferred]


TrainingExample = ChatExample | PromptCompletionExample | PreferenceExample


def build_example(value: dict[str, Any], example_format: ExampleFormat) -> TrainingExample:
    """The typed example of a line that passed the checks of its format (it is not checked again)."""
    if example_format is ExampleFormat.CHAT:
        return ChatExample(current_messages(value["messages"]), current_tools(value))
    if example_format is ExampleFormat.PROMPT_COMPLETION:
        return PromptCompletionExample(value["prompt"], value["completion"])
    source = value["input"]
    preferred = value.get("preferred_output", value.get("preferred_completion"))
    non_preferred = value.get("non_preferred_output", value.get("non_preferred_completion"))
    messages = current_messages([*source["messages"], preferred[0], non_preferred[0]])
    return PreferenceExample(messages[:-2], current_tools(source), messages[-2], messages[-1])


def current_messages(messages: list[Message]) -> list[Message]:
    """``messages`` with deprecated function calling turned into tool calling (see the module docstring)."""
    if not any(message["role"] == "function" or "function_call" in message for message in messages):
        return messages
    current: list[Message] = []
    call_ids: dict[str, str] = {}  # function name -> id of its latest call
    calls = 0
    for message in messages:
        if "function_call" in message:
            call = message["function_call"]
            call_id = call_ids[call["name"]] = f"call_{calls}"
            calls += 1
            message = {key: value for key, value in message.items() if key != "function_call"}
            message["tool_calls"] = [
                *message.get("tool_calls", ()),
                {"id": call_id, "type": "function", "function": call},
            ]
        elif message["role"] == "function":
            name = message["name"]
            message = {
                "role": "tool",
                "tool_call_id": call_ids.get(name, name),
                "name": name,
                "content": message["content"],
            }
        current.append(message)
    return current


def current_tools(holder: dict[str, Any]) -> list[Tool] | None:
    """An example's ``tools`` and (deprecated) ``functions`` as one list of tools; None if there are none."""
    tools = holder.get("tools") or []
    if holder.get("functions"):
        tools = [*tools, *({"type": "function", "function": function} for function in holder["functions"])]
    return tools or None
