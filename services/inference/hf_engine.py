"""The hf engine: a transformers model serving many PEFT LoRA adapters in one continuous batch, CPU or GPU.

One thread owns the model and runs this loop, so the event loop never waits on torch:

1. run queued adapter commands (load or drop an adapter: the model only changes between steps);
2. drop the rows of aborted requests (client gone, deadline passed) from the batch;
3. **admit** waiting requests while the batch has room: their prompts are prefilled
   together in one left-padded forward pass, each request's first token is sampled, and
   its rows join the running batch (a request with ``n`` choices takes ``n`` rows);
4. **decode** one token for every running row in one forward pass, sample, stream, and
   drop the rows that finished.

Requests therefore join and leave between decode steps, never waiting for a batch to
drain. Rows of different adapters share every forward pass: each row names its adapter
(or none) and :mod:`services.inference.lora_slots` adds that adapter's LoRA product to
that row in every targeted layer, at a cost that does not grow with the number of
distinct adapters in the batch.

The KV cache is the left-padded layout of :mod:`services.inference.kv_batch`. Sampling is
per row (:mod:`services.inference.token_sampling`), text deltas and stop strings per
choice (:mod:`services.inference.text_stream`). Results cross back to the event loop
with ``call_soon_threadsafe`` onto each request's queue.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
import torch

from services.common.errors import FailedPrecondition, Unavailable
from services.inference.engine import (
    ChoiceDelta,
    Engine,
    EngineLoad,
    FinishReason,
    GenerationRequest,
    TokenLogprob,
)
from services.inference.kv_batch import PaddedKVBatch, new_cache
from services.inference.lora_slots import LoraSlots
from services.inference.text_stream import SkippedTokens, TextStream
from services.inference.token_sampling import RowSampler, sample_next_tokens, token_logprobs

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = structlog.get_logger("tailor.inference.hf")

# Padded prompt tokens prefilled in one forward pass; more waiting prompts join at later
# steps, so a burst of long prompts cannot stall running rows for one huge prefill.
PREFILL_TOKEN_BUDGET = 8192
# A batch at least half full takes newcomers once the oldest has waited this long, so that
# several join in one prefill: each prefill is an extra forward pass, and on small models
# its fixed cost, not its tokens, dominates. It adds at most this much to a request's TTFT
# (TGI's router has the same trade-off in its max_waiting_tokens / waiting_served_ratio).
ADMISSION_WINDOW_S = 0.02


class _EndOfStream:
    """Put on a request's queue after its last deltas."""


_END = _EndOfStream()


@dataclass(eq=False)
class _Request:
    """A request as the engine thread tracks it, with the queue its results go back on."""

    request: GenerationRequest
    loop: asyncio.AbstractEventLoop
    outbox: asyncio.Queue[list[ChoiceDelta] | BaseException | _EndOfStream] = field(
        default_factory=asyncio.Queue
    )
    submitted_at: float = field(default_factory=time.monotonic)
    unfinished_choices: int = 0

    def send(self, item: list[ChoiceDelta] | BaseException | _EndOfStream) -> None:
        """Hand ``item`` to the request's consumer on its event loop (from the engine thread)."""
        try:
            self.loop.call_soon_threadsafe(self.outbox.put_nowait, item)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            pass


@dataclass(eq=False)
class _Row:
    """One choice being decoded: a row of the running batch."""

    owner: _Request
    index: int
    sampler: RowSampler
    text: TextStream
    # Position id of the token this row feeds next (its real tokens so far).
    position: int
    next_token: int = 0
    generated: int = 0
    finished: bool = False


@dataclass
class _Command:
    """Work that must run on the engine thread between steps (it changes the model)."""

    run: Callable[[], Any]
    loop: asyncio.AbstractEventLoop
    done: asyncio.Future[Any]

    def execute(self) -> None:
        try:
            result = self.run()
        except BaseException as error:
            self.loop.call_soon_threadsafe(_settle, self.done, None, error)
        else:
            self.loop.call_soon_threadsafe(_settle, self.done, result, None)


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the caller was cancelled
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class HFEngine(Engine):
    """A transformers model with continuous batching of mixed-adapter rows; see the module docstring."""

    kind = "hf"

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        max_batch_size: int,
        max_loras: int,
        max_lora_rank: int,
        max_model_len: int,
    ) -> None:
        new_cache(model.config)  # refuses models the padded cache layout cannot hold
        self.max_model_len = max_model_len
        self.adapter_capacity = max_loras
        self.vocab_size = model.config.get_text_config(decoder=True).vocab_size
        self._model = model
        self._lora = LoraSlots(model, slots=max_loras, max_rank=max_lora_rank)
        self._tokenizer = tokenizer
        self._skipped_tokens = SkippedTokens(tokenizer)
        self._device = next(model.parameters()).device
        self._max_batch_size = max_batch_size
        self._eos_token_ids = _eos_token_ids(model, tokenizer)
        self._pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

        # Shared with the event loop, under the condition's lock.
        self._wakeup = threading.Condition()
        self._submitted: deque[_Request] = deque()
        self._aborted: set[str] = set()
        self._commands: deque[_Command] = deque()
        self._admissions_paused = False
        self._closing = False

        # Engine thread only.
        self._waiting: deque[_Request] = deque()
        self._rows: list[_Row] = []
        self._batch = PaddedKVBatch.empty(model.config, self._device)
        # Read by load() from other threads; int assignment is atomic.
        self._running_requests = 0
        self._waiting_requests = 0

        self._thread = threading.Thread(target=self._run, name="hf-engine", daemon=True)
        self._thread.start()

    @classmethod
    def from_pretrained(
        cls,
        location: str,
        tokenizer: PreTrainedTokenizerBase,
        *,
        revision: str | None = None,
        device: str = "auto",
        dtype: str = "auto",
        max_batch_size: int,
        max_loras: int,
        max_lora_rank: int = 16,
        max_model_len: int = 0,
    ) -> HFEngine:
        """Load the base model from a directory or hub id and start the engine thread.

        ``max_model_len`` 0 means the model's own ``max_position_embeddings``.
        """
        from transformers import AutoModelForCausalLM

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        model = (
            AutoModelForCausalLM.from_pretrained(location, revision=revision, dtype=dtype).to(device).eval()
        )
        if getattr(model.config.get_text_config(decoder=True), "attn_logit_softcapping", None) is not None:
            # Gemma 2 caps attention scores: transformers' default sdpa kernel skips that, eager applies it.
            model.set_attn_implementation("eager")
        model_limit = model.config.max_position_embeddings
        return cls(
            model,
            tokenizer,
            max_batch_size=max_batch_size,
            max_loras=max_loras,
            max_lora_rank=max_lora_rank,
            max_model_len=min(max_model_len, model_limit) if max_model_len else model_limit,
        )

    # The event loop's side.

    @property
    def adapters(self) -> frozenset[str]:
        """The adapters loaded now."""
        return self._lora.names

    async def add_adapter(self, name: str, directory: Path) -> None:
        await self._on_engine_thread(lambda: self._lora.add(name, directory))

    async def remove_adapter(self, name: str) -> None:
        await self._on_engine_thread(lambda: self._lora.remove(name))

    async def generate(self, request: GenerationRequest) -> AsyncIterator[list[ChoiceDelta]]:
        submitted = _Request(request, asyncio.get_running_loop())
        with self._wakeup:
            if self._closing:
                raise Unavailable("the engine is shutting down")
            self._submitted.append(submitted)
            self._wakeup.notify()
        finished = False
        try:
            while True:
                item = await submitted.outbox.get()
                if isinstance(item, _EndOfStream):
                    finished = True
                    return
                if isinstance(item, BaseException):
                    finished = True
                    raise item
                yield item
        finally:
            if not finished:  # the consumer stopped early: free the slot
                self._abort_soon(request.request_id)

    def load(self) -> EngineLoad:
        return EngineLoad(
            running=self._running_requests, waiting=self._waiting_requests + len(self._submitted)
        )

    async def check_health(self) -> None:
        if not self._thread.is_alive():
            raise Unavailable("the hf engine thread has stopped")

    async def close(self) -> None:
        with self._wakeup:
            self._closing = True
            self._wakeup.notify()
        await asyncio.to_thread(self._thread.join)

    def pause_admissions(self) -> None:
        """Keep new requests waiting (running ones go on) until :meth:`resume_admissions`.

        Requests submitted meanwhile are then admitted, and prefilled, together: how a
        test forms a batch on purpose, to check that rows of one batch never mix.
        """
        with self._wakeup:
            self._admissions_paused = True

    def resume_admissions(self) -> None:
        with self._wakeup:
            self._admissions_paused = False
            self._wakeup.notify()

    def _abort_soon(self, request_id: str) -> None:
        with self._wakeup:
            self._aborted.add(request_id)
            self._wakeup.notify()

    async def _on_engine_thread(self, work: Callable[[], Any]) -> Any:
        loop = asyncio.get_running_loop()
        command = _Command(work, loop, loop.create_future())
        with self._wakeup:
            if self._closing:
                raise Unavailable("the engine is shutting down")
            self._commands.append(command)
            self._wakeup.notify()
        return await command.done

    # The engine thread.

    def _run(self) -> None:
        while True:
            with self._wakeup:
                while not self._has_work():
                    self._wakeup.wait()
                if self._closing:
                    break
                commands = list(self._commands)
                self._commands.clear()
                aborted = set(self._aborted)
                self._aborted.clear()
                self._waiting.extend(self._submitted)
                self._submitted.clear()
                admitting = not self._admissions_paused
            for command in commands:
                command.execute()
            try:
                self._drop_aborted(aborted)
                if admitting:
                    self._admit()
                if self._rows:
                    self._decode_step()
            except Exception as error:  # a failed step must not leave requests hanging
                log.exception("hf engine step failed")
                self._fail_everything(error)
            self._update_load()
        self._shut_down()

    def _has_work(self) -> bool:
        return bool(
            self._closing
            or self._commands
            or self._aborted
            or self._rows
            or (not self._admissions_paused and (self._submitted or self._waiting))
        )

    def _update_load(self) -> None:
        # Finished rows leave the batch at the next step; their requests are over already.
        self._running_requests = len({id(row.owner) for row in self._rows if not row.finished})
        self._waiting_requests = len(self._waiting)

    def _drop_aborted(self, request_ids: set[str]) -> None:
        if not request_ids:
            return
        self._waiting = deque(r for r in self._waiting if r.request.request_id not in request_ids)
        keep = [i for i, row in enumerate(self._rows) if row.owner.request.request_id not in request_ids]
        if len(keep) != len(self._rows):
            self._batch.select(keep)
            self._rows = [self._rows[i] for i in keep]

    def _admit(self) -> None:
        if not self._waiting:
            return
        half_full = 2 * len(self._rows) >= self._max_batch_size
        if half_full and time.monotonic() - self._waiting[0].submitted_at < ADMISSION_WINDOW_S:
            return
        admitted: list[_Request] = []
        rows = len(self._rows)
        padded_length = 0
        while self._waiting:
            candidate = self._waiting[0]
            choices = candidate.request.sampling.n
            length = max(padded_length, len(candidate.request.prompt_token_ids))
            fits_batch = rows + choices <= self._max_batch_size
            fits_budget = length * (len(admitted) + 1) <= PREFILL_TOKEN_BUDGET
            # An empty engine always takes the next request, however large, or it would wait forever.
            if admitted or self._rows:
                if not (fits_batch and fits_budget):
                    break
            self._waiting.popleft()
            if candidate.request.adapter is not None and candidate.request.adapter not in self._lora:
                candidate.send(FailedPrecondition(f"adapter `{candidate.request.adapter}` is not loaded"))
                continue
            admitted.append(candidate)
            rows += choices
            padded_length = length
        if not admitted:
            return
        try:
            self._prefill(admitted)
        except Exception as error:  # only the joining requests fail; the running batch is untouched
            log.exception("hf engine prefill failed")
            for request in admitted:
                request.send(error)

    def _prefill(self, requests: list[_Request]) -> None:
        prompts = [r.request.prompt_token_ids for r in requests]
        length = max(len(p) for p in prompts)
        input_ids = torch.tensor(
            [[self._pad_token_id] * (length - len(p)) + list(p) for p in prompts], device=self._device
        )
        mask = torch.tensor(
            [[False] * (length - len(p)) + [True] * len(p) for p in prompts], device=self._device
        )
        positions = (mask.long().cumsum(dim=-1) - 1).clamp(min=0)
        group = PaddedKVBatch(self._model.config, new_cache(self._model.config), mask)
        logits = self._forward(input_ids, mask, positions, group, [r.request.adapter for r in requests])

        # A request with n choices prefills once; its cache row is copied for each choice.
        row_sources = [i for i, r in enumerate(requests) for _ in range(r.request.sampling.n)]
        group.select(row_sources)
        new_rows: list[_Row] = []
        for request in requests:
            sampling = request.request.sampling
            skipped_ids = self._skipped_tokens(request.request.keep_special_tokens)
            request.unfinished_choices = sampling.n
            for index in range(sampling.n):
                seed = None if sampling.seed is None else sampling.seed + index
                new_rows.append(
                    _Row(
                        owner=request,
                        index=index,
                        sampler=RowSampler.create(
                            sampling.temperature,
                            sampling.top_p,
                            seed,
                            self._device,
                            frequency_penalty=sampling.frequency_penalty,
                            presence_penalty=sampling.presence_penalty,
                            logit_bias=sampling.logit_bias,
                            top_logprobs=sampling.top_logprobs,
                        ),
                        text=TextStream(self._tokenizer, sampling.stop, skipped_ids=skipped_ids),
                        position=len(request.request.prompt_token_ids),
                    )
                )
        self._choose_and_accept(new_rows, logits[row_sources])
        keep = [i for i, row in enumerate(new_rows) if not row.finished]
        group.select(keep)
        self._batch.extend(group)
        self._rows.extend(new_rows[i] for i in keep)

    def _decode_step(self) -> None:
        input_ids = torch.tensor([[row.next_token] for row in self._rows], device=self._device)
        positions = torch.tensor([[row.position] for row in self._rows], device=self._device)
        step_mask = self._batch.mask_with_new_column()
        logits = self._forward(
            input_ids, step_mask, positions, self._batch, [r.owner.request.adapter for r in self._rows]
        )
        self._batch.stepped(step_mask)
        for row in self._rows:
            row.position += 1
        self._choose_and_accept(self._rows, logits)
        keep = [i for i, row in enumerate(self._rows) if not row.finished]
        if len(keep) != len(self._rows):
            self._batch.select(keep)
            self._rows = [self._rows[i] for i in keep]

    def _forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        batch: PaddedKVBatch,
        adapters: Sequence[str | None],
    ) -> torch.Tensor:
        """Logits of each row's last position; the batch's cache grows by the input's columns."""
        with torch.inference_mode(), self._lora.applied(adapters, self._device):
            output = self._model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                past_key_values=batch.cache,
                use_cache=True,
                logits_to_keep=1,
            )
            return output.logits[:, -1, :]

    def _choose_and_accept(self, rows: Sequence[_Row], logits: torch.Tensor) -> None:
        """Sample each row's next token from its row of ``logits`` (with log probabilities if asked) and accept it."""
        samplers = [row.sampler for row in rows]
        tokens = sample_next_tokens(logits, samplers)
        self._accept(rows, tokens, token_logprobs(logits, tokens, samplers))

    def _accept(
        self, rows: Sequence[_Row], tokens: Sequence[int], logprobs: Sequence[TokenLogprob | None]
    ) -> None:
        """Record each row's new token, stream the text it completes, and finish rows that are done."""
        deltas: dict[int, tuple[_Request, list[ChoiceDelta]]] = {}
        for row, token, logprob in zip(rows, tokens, logprobs, strict=True):
            row.generated += 1
            request = row.owner.request
            finish: FinishReason | None = None
            if token in self._eos_token_ids and not request.ignore_eos:
                text, finish = row.text.flush(), "stop"
            else:
                text = row.text.push(token)
                if row.text.stopped:
                    finish = "stop"
                elif row.generated >= request.sampling.max_tokens:
                    text, finish = text + row.text.flush(), "length"
            row.next_token = token
            row.finished = finish is not None
            deltas.setdefault(id(row.owner), (row.owner, []))[1].append(
                ChoiceDelta(
                    index=row.index,
                    text=text,
                    token_count=1,
                    finish_reason=finish,
                    logprobs=() if logprob is None else (logprob,),
                )
            )
            if finish is not None:
                row.owner.unfinished_choices -= 1
        if any(owner.unfinished_choices == 0 for owner, _ in deltas.values()):
            # A caller that has read a request's end must find it gone from load() already.
            self._update_load()
        for owner, choice_deltas in deltas.values():
            owner.send(choice_deltas)
            if owner.unfinished_choices == 0:
                owner.send(_END)

    def _fail_everything(self, error: Exception) -> None:
        owners = {id(row.owner): row.owner for row in self._rows}
        for owner in owners.values():
            owner.send(error)
        self._rows = []
        self._batch = PaddedKVBatch.empty(self._model.config, self._device)

    def _shut_down(self) -> None:
        stopped = Unavailable("the engine stopped")
        for request in [
            *self._waiting,
            *self._submitted,
            *{id(r.owner): r.owner for r in self._rows}.values(),
        ]:
            request.send(stopped)
        for command in self._commands:
            command.loop.call_soon_threadsafe(_settle, command.done, None, stopped)


def _eos_token_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> frozenset[int]:
    """The tokens that end a choice: the generation config's (one or a list) and the tokenizer's."""
    configured = getattr(model.generation_config, "eos_token_id", None)
    ids = set(configured if isinstance(configured, list) else [configured])
    ids.add(tokenizer.eos_token_id)
    return frozenset(i for i in ids if i is not None)
