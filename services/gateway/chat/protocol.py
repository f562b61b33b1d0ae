"""OpenAI's chat completion shapes (docs/research/openai_api.md §1.5), and the request's mapping to the
contract.

Every parameter of the SDK's ``chat.completions.create`` is declared. Those Tailor does
not implement fall in two groups:

* served by the engines as OpenAI and vLLM define them: ``frequency_penalty`` and
  ``presence_penalty`` (over the choice's output tokens), ``logit_bias`` (token ids of the
  base model's vocabulary), ``logprobs`` with ``top_logprobs`` (the model's raw log
  probabilities; shapes in :mod:`services.gateway.logprobs`);
* ignored, where OpenAI would answer anyway and the answer is still what the user
  asked for (``user``, ``metadata``, ``store``, ``parallel_tool_calls``, ...);
  ``tools`` are handed to the chat template, and the reply is parsed back into
  ``tool_calls`` in the format the base model writes them (a model trained without tools
  simply answers in text); ``tool_choice: "none"`` leaves the tools out of the prompt, so
  nothing is parsed;
* refused with a 400 naming the parameter, where ignoring it would mislead:
  a JSON ``response_format``, a forced ``tool_choice``, audio, and non-text content parts.

A parameter no SDK sends (a typo such as ``max_token``) is a 400, as on OpenAI.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from services.common.errors import shown
from services.gateway.errors import invalid_request, unsupported_parameter
from services.gateway.generation import GenerationInput
from services.gateway.protocol import Int32, Int64
from tailor.inference.v1 import inference_service_pb2 as pb

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]


class ContentPart(BaseModel):
    """One part of a message's content; only ``text`` (and an assistant's ``refusal``) parts are served."""

    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None
    refusal: str | None = None


class FunctionCall(BaseModel):
    name: str
    arguments: str


class ToolCall(BaseModel):
    """A function call an assistant made in an earlier turn."""

    model_config = ConfigDict(extra="allow")

    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(BaseModel):
    """One message of the conversation; extra fields OpenAI defines (``audio``, ``annotations``) are ignored."""

    model_config = ConfigDict(extra="allow")

    role: Role
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None

    def text(self, position: int) -> str:
        """The content as one string: text parts joined, anything else refused."""
        if self.content is None or isinstance(self.content, str):
            return self.content or ""
        texts = []
        for part_index, part in enumerate(self.content):
            if part.type == "text" and part.text is not None:
                texts.append(part.text)
            elif part.type == "refusal" and part.refusal is not None:
                texts.append(part.refusal)
            else:
                raise invalid_request(
                    f"Tailor's models read text only; content part type '{shown(part.type)}' "
                    "is not supported.",
                    param=f"messages[{position}].content[{part_index}]",
                    code="unsupported_content_type",
                )
        return "".join(texts)

    def to_proto(self, position: int) -> pb.ChatMessage:
        return pb.ChatMessage(
            role=self.role,
            content=self.text(position),
            name=self.name or "",
            tool_calls=[
                pb.ToolCall(id=call.id, name=call.function.name, arguments=call.function.arguments)
                for call in self.tool_calls or ()
            ],
            tool_call_id=self.tool_call_id or "",
        )


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool | None = None
    include_obfuscation: bool | None = None


Stop = str | list[str] | None
# OpenAI's logit_bias keys are token ids written as decimal strings.
_TOKEN_ID = re.compile(r"[0-9]{1,18}")
MAX_LOGIT_BIAS_ENTRIES = 1024


def logit_bias_by_token(logit_bias: dict[str, int] | None) -> dict[int, float]:
    """``logit_bias`` keyed by token id; 400 for a key that is no token id or a bias out of [-100, 100].

    Whether an id is in the base model's vocabulary is the inference service's to say (400 too).
    """
    entries = logit_bias or {}
    if len(entries) > MAX_LOGIT_BIAS_ENTRIES:
        raise invalid_request(
            f"'logit_bias' takes at most {MAX_LOGIT_BIAS_ENTRIES} tokens, got {len(entries)}.",
            param="logit_bias",
            code="invalid_value",
        )
    biases: dict[int, float] = {}
    for key, bias in entries.items():
        if not _TOKEN_ID.fullmatch(key):
            raise invalid_request(
                f"Invalid key in 'logit_bias': {key[:24]!r} is not a token id (a non-negative integer).",
                param="logit_bias",
                code="invalid_value",
            )
        if not -100 <= bias <= 100:
            raise invalid_request(
                f"Invalid value in 'logit_bias' for token {key}: biases go from -100 to 100.",
                param="logit_bias",
                code="invalid_value",
            )
        biases[int(key)] = float(bias)
    return biases


def sampling_params(
    *,
    temperature: float | None,
    top_p: float | None,
    max_tokens: int | None,
    stop: Stop,
    seed: int | None,
    n: int | None,
    frequency_penalty: float | None = None,
    presence_penalty: float | None = None,
    logit_bias: dict[int, float] | None = None,
    top_logprobs: int | None = None,
) -> pb.SamplingParams:
    """The contract's SamplingParams; absent values keep the inference service's defaults.

    ``top_logprobs`` None asks for no log probabilities; 0 for the chosen tokens' only.
    """
    sampling = pb.SamplingParams(
        stop=[stop] if isinstance(stop, str) else list(stop or ()), logit_bias=logit_bias or {}
    )
    if frequency_penalty is not None:
        sampling.frequency_penalty = frequency_penalty
    if presence_penalty is not None:
        sampling.presence_penalty = presence_penalty
    if top_logprobs is not None:
        sampling.top_logprobs = top_logprobs
    if temperature is not None:
        sampling.temperature = temperature
    if top_p is not None:
        sampling.top_p = top_p
    if max_tokens is not None:
        sampling.max_tokens = max_tokens
    if seed is not None:
        sampling.seed = seed
    if n is not None:
        sampling.n = n
    return sampling


def check_stop(stop: Stop) -> None:
    if isinstance(stop, list) and len(stop) > 4:
        raise invalid_request("'stop' takes at most 4 sequences.", param="stop", code="invalid_value")


class ChatCompletionRequest(BaseModel):
    """The body of ``POST /v1/chat/completions``."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    n: int | None = Field(None, ge=1, le=128)
    max_tokens: Int32 | None = Field(None, ge=1)
    max_completion_tokens: Int32 | None = Field(None, ge=1)
    stop: Stop = None
    seed: Int64 | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    # handed to the chat template
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    functions: list[dict[str, Any]] | None = None
    # served (see the module docstring)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    logit_bias: dict[str, int] | None = None
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    # refused when set to something Tailor cannot honour (see the module docstring)
    response_format: dict[str, Any] | None = None
    audio: dict[str, Any] | None = None
    modalities: list[str] | None = None
    # accepted and ignored
    function_call: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    user: str | None = None
    safety_identifier: str | None = None
    service_tier: str | None = None
    reasoning_effort: str | None = None
    verbosity: str | None = None
    prediction: dict[str, Any] | None = None
    prompt_cache_key: str | None = None
    prompt_cache_options: dict[str, Any] | None = None
    prompt_cache_retention: str | None = None
    moderation: Any = None
    web_search_options: dict[str, Any] | None = None

    @property
    def choices(self) -> int:
        return self.n or 1

    @property
    def include_usage(self) -> bool:
        return bool(self.stream and self.stream_options and self.stream_options.include_usage)

    def refuse_unsupported(self) -> None:
        """400 for the parameters whose silent omission would mislead; see the module docstring."""
        if self.top_logprobs is not None and not self.logprobs:
            raise invalid_request(
                "Invalid value for 'top_logprobs': 'logprobs' must be set to true when 'top_logprobs' is used.",
                param="top_logprobs",
                code="invalid_value",
            )
        if self.response_format and self.response_format.get("type", "text") != "text":
            raise unsupported_parameter(
                "response_format", "Tailor cannot constrain output to JSON; only {'type': 'text'} is served."
            )
        if self.tool_choice not in (None, "none", "auto"):
            raise unsupported_parameter(
                "tool_choice", "Tailor cannot force a tool call; use 'auto' or 'none'."
            )
        if self.audio is not None or "audio" in (self.modalities or ()):
            raise unsupported_parameter("audio", "Tailor's models produce text only.")
        if self.stream_options is not None and not self.stream:
            raise invalid_request(
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                param="stream_options",
                code="invalid_value",
            )
        check_stop(self.stop)

    def check_conversation(self) -> None:
        """400 for messages and tools OpenAI refuses, naming the message or tool at fault."""
        for position, message in enumerate(self.messages):
            where = f"messages[{position}]"
            # Only an assistant turn that calls a tool, and a (deprecated) function result,
            # may go without content.
            calls = message.tool_calls or getattr(message, "function_call", None)
            if message.content is None and message.role != "function" and not (
                message.role == "assistant" and calls
            ):
                raise invalid_request(
                    f"Missing required parameter: '{where}.content'.",
                    param=f"{where}.content",
                    code="missing_required_parameter",
                )
            if message.role == "tool" and not message.tool_call_id:
                raise invalid_request(
                    f"Missing required parameter: '{where}.tool_call_id'.",
                    param=f"{where}.tool_call_id",
                    code="missing_required_parameter",
                )
        for index, tool in enumerate(self.tools or ()):
            function = tool.get("function")
            if tool.get("type") != "function" or not isinstance(function, dict):
                raise invalid_request(
                    f"Invalid value for 'tools[{index}].type': Tailor serves tools of type 'function' "
                    "with a 'function' object.",
                    param=f"tools[{index}].type",
                    code="invalid_value",
                )
            if not isinstance(function.get("name"), str) or not function["name"]:
                raise invalid_request(
                    f"Missing required parameter: 'tools[{index}].function.name'.",
                    param=f"tools[{index}].function.name",
                    code="missing_required_parameter",
                )

    def generation_input(self) -> GenerationInput:
        """What to generate (400 for what cannot be honoured); the model is resolved separately."""
        self.check_conversation()
        self.refuse_unsupported()
        return GenerationInput(
            prompt=pb.ChatInput(
                messages=[message.to_proto(position) for position, message in enumerate(self.messages)],
                tools_json=self._tools_json(),
            ),
            sampling=sampling_params(
                temperature=self.temperature,
                top_p=self.top_p,
                max_tokens=self.max_completion_tokens or self.max_tokens,
                stop=self.stop,
                seed=self.seed,
                n=self.n,
                frequency_penalty=self.frequency_penalty,
                presence_penalty=self.presence_penalty,
                logit_bias=logit_bias_by_token(self.logit_bias),
                top_logprobs=(self.top_logprobs or 0) if self.logprobs else None,
            ),
        )

    def _tools_json(self) -> str:
        if self.tool_choice == "none":
            return ""
        # the deprecated `functions` are tools of type function
        tools = list(self.tools or ()) + [{"type": "function", "function": f} for f in self.functions or ()]
        return json.dumps(tools) if tools else ""


# -- responses (streamed chunks are built in serving as plain dicts: one per token, kept cheap) --


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(BaseModel):
    """The reply: its text, or null when it is only tool calls (without calls, ``tool_calls`` is absent)."""

    role: Literal["assistant"] = "assistant"
    content: str | None
    refusal: str | None = None
    tool_calls: list[ToolCall] | None = Field(None, exclude_if=lambda calls: calls is None)


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None


class TokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob]


class ChoiceLogprobs(BaseModel):
    """A choice's log probabilities (``logprobs: true``): one entry per generated token."""

    content: list[TokenLogprob] | None
    refusal: list[TokenLogprob] | None = None


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    logprobs: ChoiceLogprobs | None = None
    finish_reason: Literal["stop", "length", "tool_calls"]


class ChatCompletion(BaseModel):
    """A whole answer (``stream`` false)."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage
    system_fingerprint: str
