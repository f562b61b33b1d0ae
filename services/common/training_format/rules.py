"""The checks of one example, by format: chat, prompt/completion, preference (see the package docstring).

Each check takes a parsed JSON object whose format :func:`detect_format` found, adds what it
holds to an :class:`ExampleCounts`, and raises :class:`~.problems.InvalidExample` naming the
first thing wrong. Checks of tools (calls and definitions) are in :mod:`.tools`.
"""

from __future__ import annotations

from typing import Any

from services.common.training_format.examples import ExampleFormat
from services.common.training_format.problems import (
    check_keys,
    describe_role,
    fail,
    fail_unknown_key,
    json_type,
    shorten,
)
from services.common.training_format.tools import check_function_call, check_tool_calls, check_tool_settings


class ExampleCounts:
    """What one example holds, counted while it is checked (the file's statistics add these up)."""

    __slots__ = ("assistant", "characters", "messages", "trained")

    def __init__(self) -> None:
        self.messages = 0
        self.characters = 0
        self.trained = 0
        self.assistant = 0


PREFERENCE_KEYS = frozenset(
    {"input", "preferred_output", "non_preferred_output", "preferred_completion", "non_preferred_completion"}
)


def detect_format(example: dict[str, Any]) -> ExampleFormat:
    """The format an example is meant to be in, judged by its keys (then checked against it)."""
    if "messages" in example:
        return ExampleFormat.CHAT
    if "prompt" in example or "completion" in example:
        return ExampleFormat.PROMPT_COMPLETION
    if not PREFERENCE_KEYS.isdisjoint(example):
        return ExampleFormat.PREFERENCE
    found = ", ".join(shorten(key, 40) for key in list(example)[:5]) or "none"
    fail(
        "unknown_format",
        "not a fine-tuning example: expected messages (chat), prompt and completion, or input, "
        f"preferred_output and non_preferred_output (preference); keys found: {found}",
    )


_CHAT_KEYS = frozenset({"messages", "tools", "parallel_tool_calls", "functions"})


def check_chat(example: dict[str, Any], counts: ExampleCounts) -> None:
    check_keys(example, _CHAT_KEYS, "the example")
    check_messages(example["messages"], "messages", counts)
    if counts.assistant == 0:
        fail("missing_assistant_message", "no assistant message: each example needs at least one to train on")
    if counts.trained == 0:
        fail("no_trained_messages", "every assistant message has weight 0, so the example trains nothing")
    if len(example) > 1:
        check_tool_settings(example, "")


_PROMPT_COMPLETION_KEYS = frozenset({"prompt", "completion"})


def check_prompt_completion(example: dict[str, Any], counts: ExampleCounts) -> None:
    check_keys(example, _PROMPT_COMPLETION_KEYS, "a prompt/completion example")
    for key in ("prompt", "completion"):
        if key not in example:
            fail(f"invalid_{key}", f"missing {key}")
    prompt, completion = example["prompt"], example["completion"]
    if type(prompt) is not str:
        fail("invalid_prompt", f"prompt must be a string, got {json_type(prompt)}")
    if type(completion) is not str:
        fail("invalid_completion", f"completion must be a string, got {json_type(completion)}")
    if not completion:
        fail("no_trained_messages", "completion is empty, so the example trains nothing")
    counts.characters += len(prompt) + len(completion)
    counts.trained += 1


_PREFERENCE_INPUT_KEYS = frozenset({"messages", "tools", "parallel_tool_calls"})
# Each output's name in OpenAI's DPO guide, and in its 2025 API spec.
PREFERENCE_OUTPUTS = (
    ("preferred_output", "preferred_completion"),
    ("non_preferred_output", "non_preferred_completion"),
)


def check_preference(example: dict[str, Any], counts: ExampleCounts) -> None:
    check_keys(example, PREFERENCE_KEYS, "a preference example")
    if "input" not in example:
        fail("invalid_input", "missing input")
    source = example["input"]
    if type(source) is not dict:
        fail("invalid_input", f"input must be an object with messages, got {json_type(source)}")
    check_keys(source, _PREFERENCE_INPUT_KEYS, "input")
    check_messages(source.get("messages"), "input.messages", counts)
    last_role = source["messages"][-1]["role"]
    if last_role != "user":
        fail(
            "invalid_input",
            f"input.messages must end with a user message (the turn both outputs answer), not {last_role}",
        )
    check_tool_settings(source, "input.")
    for name, alias in PREFERENCE_OUTPUTS:
        path, output = preference_output(example, name, alias)
        # OpenAI trains on one-turn preferences: each output is the one reply to the input.
        if type(output) is not list or len(output) != 1:
            got = f"a list of {len(output)}" if type(output) is list and output else json_type(output)
            fail("invalid_output", f"{path} must be a list of exactly one assistant message, got {got}")
        message = output[0]
        if type(message) is dict and message.get("role") != "assistant":
            fail("invalid_output", f"{path}[0]: must be an assistant message, not {describe_role(message)}")
        check_message(message, path, 0, _OUTPUT_MESSAGE_KEYS, counts)


def preference_output(example: dict[str, Any], name: str, alias: str) -> tuple[str, Any]:
    """The output under either of its names, and the name it was found under."""
    if name in example and alias in example:
        fail("invalid_output", f"both {name} and {alias} are set; they are two names for one field")
    if name in example:
        return name, example[name]
    if alias in example:
        return alias, example[alias]
    fail("invalid_output", f"missing {name}")


# Messages.

ROLE_KEYS: dict[str, frozenset[str]] = {
    "system": frozenset({"role", "content", "name"}),
    "developer": frozenset({"role", "content", "name"}),
    "user": frozenset({"role", "content", "name"}),
    "assistant": frozenset({"role", "content", "name", "weight", "tool_calls", "function_call"}),
    "tool": frozenset({"role", "content", "tool_call_id"}),
    "function": frozenset({"role", "content", "name"}),
}
# Preference outputs are what the model should (not) say: no per-message weight there.
_OUTPUT_MESSAGE_KEYS = ROLE_KEYS["assistant"] - {"weight"}
_ROLES = ", ".join(ROLE_KEYS)
# Roles whose message may be just role and text content (a "plain" message: the common case,
# which check_messages and the batch reader of .batches recognise before any other check).
PLAIN_ROLES = frozenset({"system", "developer", "user", "assistant"})
_ABSENT = object()


def check_messages(messages: Any, path: str, counts: ExampleCounts) -> None:
    if type(messages) is not list or not messages:
        fail("missing_messages_list", f"{path} must be a non-empty list, got {json_type(messages)}")
    # Most messages are {"role": ..., "content": "..."} of a plain role: they are recognised
    # here in a few operations and counted in locals. Anything else takes the full check.
    plain = characters = replies = 0
    for index, message in enumerate(messages):
        if type(message) is dict and len(message) == 2:
            content = message.get("content")
            role = message.get("role")
            if type(content) is str and type(role) is str and role in PLAIN_ROLES:
                plain += 1
                characters += len(content)
                if role == "assistant":
                    replies += 1
                continue
        check_message(message, path, index, None, counts)
    counts.messages += plain
    counts.characters += characters
    counts.assistant += replies
    counts.trained += replies


def check_message(
    message: Any, path: str, index: int, allowed_keys: frozenset[str] | None, counts: ExampleCounts
) -> None:
    """Check ``path[index]``; ``allowed_keys`` overrides its role's keys (preference outputs)."""
    if type(message) is not dict:
        fail("invalid_message", f"{path}[{index}]: a message must be an object, got {json_type(message)}")
    role = message.get("role")
    role_keys = ROLE_KEYS.get(role) if type(role) is str else None
    if role_keys is None:
        if "role" not in message:
            fail("message_missing_key", f"{path}[{index}]: missing role")
        fail("unrecognized_role", f"{path}[{index}]: unknown role {shorten(role)}; roles are {_ROLES}")
    keys = allowed_keys or role_keys
    if not keys.issuperset(message):
        fail_unknown_key(message, keys, f"{path}[{index}]")
    if "name" in message and type(message["name"]) is not str:
        fail("invalid_message", f"{path}[{index}].name must be a string, got {json_type(message['name'])}")
    counts.messages += 1

    content = message.get("content", _ABSENT)
    if role == "assistant":
        _check_assistant(message, content, path, index, counts)
        return
    if role == "tool" and type(message.get("tool_call_id")) is not str:
        fail("message_missing_key", f"{path}[{index}]: a tool message needs a string tool_call_id")
    if role == "function" and type(message.get("name")) is not str:
        fail("message_missing_key", f"{path}[{index}]: a function message needs a string name")
    if type(content) is str:
        counts.characters += len(content)
    elif content is _ABSENT:
        fail("message_missing_key", f"{path}[{index}]: missing content")
    else:
        counts.characters += _text_length(content, f"{path}[{index}].content")


def _check_assistant(
    message: dict[str, Any], content: Any, path: str, index: int, counts: ExampleCounts
) -> None:
    weight = message.get("weight", 1)
    if type(weight) not in (int, float) or weight not in (0, 1):
        fail("invalid_weight", f"{path}[{index}].weight must be 0 or 1, got {shorten(weight)}")
    calls = False
    if "tool_calls" in message:
        check_tool_calls(message["tool_calls"], path, index)
        calls = True
    if "function_call" in message:
        check_function_call(message["function_call"], path, index)
        calls = True
    if type(content) is str:
        counts.characters += len(content)
    elif content is None or content is _ABSENT:
        # A reply may consist of tool calls alone; otherwise there is nothing to learn.
        if not calls:
            fail("missing_content", f"{path}[{index}]: an assistant message needs content or tool_calls")
    else:
        counts.characters += _text_length(content, f"{path}[{index}].content")
    counts.assistant += 1
    if weight:
        counts.trained += 1


_TEXT_PART_KEYS = frozenset({"type", "text"})


def _text_length(content: Any, where: str) -> int:
    """Characters of a message's text: a string, or a list of OpenAI text content parts."""
    if type(content) is str:
        return len(content)
    if type(content) is not list:
        fail("missing_content", f"{where} must be a string or a list of text parts, got {json_type(content)}")
    length = 0
    for index, part in enumerate(content):
        if type(part) is not dict:
            fail("invalid_content", f"{where}[{index}] must be a content part object, got {json_type(part)}")
        kind = part.get("type")
        if kind != "text":
            # Tailor's base models read text only, so image or audio parts could not be trained on.
            fail(
                "unsupported_content",
                f"{where}[{index}]: only text parts are supported, not {shorten(kind)}",
            )
        check_keys(part, _TEXT_PART_KEYS, f"{where}[{index}]")
        text = part.get("text")
        if type(text) is not str:
            fail("invalid_content", f"{where}[{index}].text must be a string, got {json_type(text)}")
        length += len(text)
    return length
