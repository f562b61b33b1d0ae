"""OpenAI's legacy text completion shapes (docs/research/openai_api.md §1.6), and the request's mapping.

Tailor serves one text prompt per request. Token-id prompts need the base model's
tokenizer, which the gateway does not load, and a batch of prompts is left to the
caller; both are refused with a 400 rather than answered partially. As in chat, the
penalties, ``logit_bias`` and ``logprobs`` (0-5 alternatives per token) are served; ``suffix``,
a ``best_of`` other than ``n`` and ``logprobs`` with ``echo`` (OpenAI would score the prompt's
tokens too, which Tailor does not) would be misleading if ignored and are refused; ``user``
is ignored.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from services.gateway.chat.protocol import (
    Stop,
    StreamOptions,
    Usage,
    check_stop,
    logit_bias_by_token,
    sampling_params,
)
from services.gateway.errors import invalid_request, unsupported_parameter
from services.gateway.generation import GenerationInput
from services.gateway.protocol import Int32, Int64

# OpenAI's default for this endpoint (chat has none).
DEFAULT_MAX_TOKENS = 16


class CompletionRequest(BaseModel):
    """The body of ``POST /v1/completions``."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1)
    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: Int32 | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    n: int | None = Field(None, ge=1, le=128)
    stop: Stop = None
    seed: Int64 | None = None
    echo: bool | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    # served (see the module docstring)
    logprobs: int | None = Field(None, ge=0, le=5)
    logit_bias: dict[str, int] | None = None
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    # refused when set to something Tailor cannot honour
    best_of: int | None = Field(None, ge=1, le=20)
    suffix: str | None = None
    # accepted and ignored
    user: str | None = None

    @property
    def choices(self) -> int:
        return self.n or 1

    @property
    def include_usage(self) -> bool:
        return bool(self.stream and self.stream_options and self.stream_options.include_usage)

    def prompt_text(self) -> str:
        """The one text prompt; 400 for token ids or several prompts."""
        prompt = self.prompt
        if isinstance(prompt, str):
            return prompt
        if len(prompt) == 1 and isinstance(prompt[0], str):
            return prompt[0]
        if prompt and all(isinstance(item, str) for item in prompt):
            raise invalid_request(
                "Tailor completes one prompt per request; send the prompts as separate requests.",
                param="prompt",
                code="invalid_value",
            )
        raise invalid_request(
            "Tailor takes the prompt as text, not token ids.", param="prompt", code="invalid_value"
        )

    def generation_input(self) -> GenerationInput:
        """What to generate (400 for what cannot be honoured); the model is resolved separately."""
        if self.logprobs is not None and self.echo:
            raise unsupported_parameter(
                "logprobs", "Tailor scores generated tokens only, not an echoed prompt's; drop echo."
            )
        if self.suffix:
            raise unsupported_parameter(
                "suffix", "Tailor does not insert text between a prompt and a suffix."
            )
        if self.best_of is not None and self.best_of != self.choices:
            raise unsupported_parameter("best_of", "Tailor returns every sampled choice; set n instead.")
        if self.stream_options is not None and not self.stream:
            raise invalid_request(
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                param="stream_options",
                code="invalid_value",
            )
        check_stop(self.stop)
        return GenerationInput(
            prompt=self.prompt_text(),
            sampling=sampling_params(
                temperature=self.temperature,
                top_p=self.top_p,
                max_tokens=self.max_tokens or DEFAULT_MAX_TOKENS,
                stop=self.stop,
                seed=self.seed,
                n=self.n,
                frequency_penalty=self.frequency_penalty,
                presence_penalty=self.presence_penalty,
                logit_bias=logit_bias_by_token(self.logit_bias),
                top_logprobs=self.logprobs,
            ),
        )


class CompletionLogprobs(BaseModel):
    """A choice's log probabilities (``logprobs``): per generated token, in order."""

    tokens: list[str]
    token_logprobs: list[float]
    top_logprobs: list[dict[str, float]]
    text_offset: list[int]


class CompletionChoice(BaseModel):
    index: int
    text: str
    logprobs: CompletionLogprobs | None = None
    finish_reason: Literal["stop", "length"]


class Completion(BaseModel):
    """A whole answer (``stream`` false); streamed chunks have the same shape."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage
    system_fingerprint: str
