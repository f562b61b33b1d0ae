"""The vllm engine: vLLM 0.26's ``AsyncLLM`` in this process, multi-LoRA on a GPU.

vLLM does the batching, the paged KV cache, the LoRA kernels and its own two-level
adapter LRU (``max_loras`` GPU slots, ``max_cpu_loras`` in host memory). This module
translates:

- an adapter becomes a ``LoRARequest`` whose ``lora_int_id`` comes from
  :class:`LoRAIds`: one stable id per adapter name for the life of the process, never
  reused for another name (vLLM keys its caches on the id and silently serves whatever
  is cached under it). ``add_adapter`` pre-loads it with ``add_lora`` (validated and
  warm before the first request), ``remove_adapter`` calls ``remove_lora`` (vLLM's own
  unload endpoint does not, so memory would stay held);
- a request becomes ``SamplingParams`` with ``output_kind=DELTA``; prompts are token ids
  rendered by Tailor, passed through the engine's renderer as vLLM 0.26 prefers;
- outputs come back as per-choice deltas; closing the stream (client gone, deadline)
  cancels ``generate()``, which aborts the request in the engine.

vLLM is imported only when this engine is built: it is installed on GPU images only.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from services.common.errors import FailedPrecondition, TailorError, Unavailable
from services.inference.engine import ChoiceDelta, Engine, EngineLoad, FinishReason, GenerationRequest
from services.inference.sampling import SamplingSettings

if TYPE_CHECKING:
    from vllm.lora.request import LoRARequest
    from vllm.v1.engine.async_llm import AsyncLLM


class LoRAIds:
    """Stable integer ids for adapter names: 1, 2, 3, ... in order of first use, never reused."""

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}
        self._next = itertools.count(1)  # vLLM requires ids > 0

    def id_for(self, name: str) -> int:
        """The adapter's id; the same for the same name however often it is unloaded and reloaded."""
        if name not in self._ids:
            self._ids[name] = next(self._next)
        return self._ids[name]


def sampling_params_kwargs(sampling: SamplingSettings, *, ignore_eos: bool = False) -> dict[str, Any]:
    """Keyword arguments of vLLM's ``SamplingParams`` for validated settings (delta streaming added by the caller).

    vLLM seeds choice ``i`` of a request with ``seed + i``, as the hf engine does.
    Stop strings are cut from the output and never half-streamed, as OpenAI's are.
    """
    return {
        "n": sampling.n,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "max_tokens": sampling.max_tokens,
        "stop": list(sampling.stop) or None,
        "seed": sampling.seed,
        "ignore_eos": ignore_eos,
        "skip_special_tokens": True,
        "include_stop_str_in_output": False,
    }


def finish_reason_from_vllm(reason: str | None) -> FinishReason | None:
    """Map a ``CompletionOutput.finish_reason``; an engine-side abort or error becomes an exception."""
    if reason is None:
        return None
    if reason in ("stop", "repetition"):  # repetition detection ends a choice like a stop string
        return "stop"
    if reason == "length":
        return "length"
    if reason == "abort":
        raise Unavailable("the engine aborted the request")
    raise TailorError(f"the engine failed the request (finish reason {reason!r})")


class VLLMEngine(Engine):
    """vLLM's AsyncLLM with LoRA enabled; see the module docstring."""

    kind = "vllm"

    def __init__(
        self,
        location: str,
        *,
        served_model_name: str,
        revision: str | None = None,
        dtype: str = "auto",
        max_batch_size: int,
        max_loras: int,
        max_cpu_loras: int,
        max_lora_rank: int,
        max_model_len: int = 0,
        gpu_memory_utilization: float = 0.9,
        enforce_eager: bool = False,
    ) -> None:
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        engine_args = AsyncEngineArgs(
            model=location,
            served_model_name=served_model_name,
            revision=revision,
            dtype=dtype,
            max_model_len=max_model_len or None,
            gpu_memory_utilization=gpu_memory_utilization,
            enforce_eager=enforce_eager,
            max_num_seqs=max_batch_size,
            enable_lora=True,
            max_loras=max_loras,
            max_cpu_loras=max_cpu_loras,
            max_lora_rank=max_lora_rank,
        )
        self._llm: AsyncLLM = AsyncLLM.from_engine_args(engine_args)
        self.max_model_len = self._llm.model_config.max_model_len
        # Keep no more adapters registered than vLLM's CPU cache holds, so it never evicts
        # behind the adapter cache's back (a re-load inside an engine step stalls everyone).
        self.adapter_capacity = max_cpu_loras
        self._ids = LoRAIds()
        self._paths: dict[str, str] = {}
        self._running = 0
        self._waiting = 0

    def _lora_request(self, name: str) -> LoRARequest:
        from vllm.lora.request import LoRARequest

        return LoRARequest(lora_name=name, lora_int_id=self._ids.id_for(name), lora_path=self._paths[name])

    async def add_adapter(self, name: str, directory: Path) -> None:
        self._paths[name] = str(directory)
        try:
            await self._llm.add_lora(self._lora_request(name))
        except Exception as error:  # vLLM reports a failed load as a plain Exception with its message
            del self._paths[name]
            raise FailedPrecondition(f"adapter `{name}` could not be loaded: {error}") from error

    async def remove_adapter(self, name: str) -> None:
        if self._paths.pop(name, None) is not None:
            await self._llm.remove_lora(self._ids.id_for(name))

    async def generate(self, request: GenerationRequest) -> AsyncIterator[list[ChoiceDelta]]:
        from vllm.sampling_params import RequestOutputKind, SamplingParams

        params = SamplingParams(
            **sampling_params_kwargs(request.sampling, ignore_eos=request.ignore_eos),
            output_kind=RequestOutputKind.DELTA,
        )
        lora = self._lora_request(request.adapter) if request.adapter is not None else None
        (engine_input,) = await self._llm.renderer.render_cmpl_async(
            [{"prompt_token_ids": list(request.prompt_token_ids)}]
        )
        self._waiting += 1
        started = False
        try:
            async for output in self._llm.generate(
                engine_input, params, request.request_id, lora_request=lora
            ):
                if not started:
                    started = True
                    self._waiting -= 1
                    self._running += 1
                yield [
                    ChoiceDelta(
                        index=choice.index,
                        text=choice.text,
                        token_count=len(choice.token_ids),
                        finish_reason=finish_reason_from_vllm(choice.finish_reason),
                    )
                    for choice in output.outputs
                ]
        finally:
            # generate() aborts the request itself when this stream is cancelled or closed.
            if started:
                self._running -= 1
            else:
                self._waiting -= 1

    def load(self) -> EngineLoad:
        # As seen from here: a request waits until its first output arrives (vLLM's own
        # scheduler gauges, exported by vLLM, have the exact split).
        return EngineLoad(running=self._running, waiting=self._waiting)

    async def check_health(self) -> None:
        try:
            await self._llm.check_health()
        except Exception as error:
            raise Unavailable(f"the vLLM engine is not healthy: {error}") from error

    async def close(self) -> None:
        self._llm.shutdown()
