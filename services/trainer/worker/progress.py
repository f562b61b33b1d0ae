"""The worker's side of the progress contract (``WorkerService``): claim, reports, heartbeats, directives.

:class:`TrainerLink` wraps the gRPC stub. Events are queued by :meth:`TrainerLink.post` (from
any thread: the training loop runs in one of its own) and sent by :meth:`TrainerLink.heartbeats`,
a task that calls ``ReportEvents`` whenever events wait and at least every heartbeat interval,
so the trainer hears from the worker however slow a step is.

Every response carries a directive, and the link remembers why the worker must stop
(:attr:`TrainerLink.stop`): CANCEL (stop now, upload nothing more), PAUSE (save and report a
checkpoint, then exit), or the trainer refusing a report (FAILED_PRECONDITION or NOT_FOUND: the
attempt was superseded or the job is gone), which ends the worker like a cancel. SIGTERM is
recorded the same way by the caller.
"""

from __future__ import annotations

import asyncio
import collections
import enum
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc
import structlog

from tailor.trainer.v1 import job_pb2, worker_service_pb2, worker_service_pb2_grpc

log = structlog.get_logger("tailor.worker.progress")

ResponseT = TypeVar("ResponseT")

# Bursts of events (a step's metrics, then a checkpoint) go out in one call rather than several.
MIN_REPORT_GAP_S = 0.2
# A report the trainer could not take (it restarted, the network blinked) is retried for about this long.
REPORT_RETRY_DELAYS_S = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0)
_REFUSALS = (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND)
_TRANSIENT = (
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
)


class Stop(enum.Enum):
    """Why the worker must stop before finishing the job."""

    CANCEL = "cancel"  # the job was cancelled: stop now, upload nothing more
    PAUSE = "pause"  # the job was paused: checkpoint, report it, exit
    REFUSED = "refused"  # the trainer refused a report: this attempt no longer owns the job
    TERMINATED = "terminated"  # SIGTERM: stop within seconds

    @property
    def is_immediate(self) -> bool:
        """Whether to abandon even the current step (everything but a pause)."""
        return self is not Stop.PAUSE


class ReportRefused(Exception):
    """The trainer refused a report: the job was cancelled or deleted, or another attempt owns it."""


class TrainerUnreachable(Exception):
    """The trainer did not take a report despite retries; the outcome cannot be reported."""


class TrainerLink:
    """One worker attempt's conversation with the trainer. Create it inside the running event loop."""

    def __init__(
        self, stub: worker_service_pb2_grpc.WorkerServiceStub, identity: worker_service_pb2.WorkerIdentity
    ) -> None:
        self._stub = stub
        self._identity = identity
        self._loop = asyncio.get_running_loop()
        self._events: collections.deque[worker_service_pb2.WorkerEvent] = collections.deque()
        self._wake = asyncio.Event()
        self._send_lock = asyncio.Lock()
        # Set once ReportSucceeded or ReportFailed was taken: the attempt is over for the trainer,
        # which refuses its reports from then on, so the heartbeats stop.
        self._outcome_reported = False
        self.heartbeat_interval_s = 10.0
        # Both are also read and written by the training thread: single reference assignments, atomic in CPython.
        self.current_step = 0
        self.stop: Stop | None = None

    # Stopping.

    def request_stop(self, reason: Stop) -> None:
        """Record a reason to stop; a pause never overrides a harder stop, the first hard stop stays."""
        if self.stop is None or (self.stop is Stop.PAUSE and reason is not Stop.PAUSE):
            self.stop = reason
            log.info("stop requested", reason=reason.value)

    def _obey(self, directive: int) -> None:
        if directive == worker_service_pb2.WORKER_DIRECTIVE_CANCEL:
            self.request_stop(Stop.CANCEL)
        elif directive == worker_service_pb2.WORKER_DIRECTIVE_PAUSE:
            self.request_stop(Stop.PAUSE)

    # Unary reports.

    async def claim(self) -> worker_service_pb2.TrainingPlan:
        """ClaimJob: the job's training plan. Also takes the heartbeat interval from it."""
        response = await self._call(
            self._stub.ClaimJob, worker_service_pb2.ClaimJobRequest(worker=self._identity)
        )
        if response.plan.heartbeat_interval_s > 0:
            self.heartbeat_interval_s = float(response.plan.heartbeat_interval_s)
        return response.plan

    async def started(
        self, resolved_method: job_pb2.Method, *, total_steps: int, training_examples: int
    ) -> None:
        """ReportStarted, with every hyperparameter resolved."""
        request = worker_service_pb2.ReportStartedRequest(
            worker=self._identity,
            resolved_method=resolved_method,
            total_steps=total_steps,
            training_examples=training_examples,
        )
        response = await self._call(self._stub.ReportStarted, request)
        self._obey(response.directive)

    async def checkpoint(
        self,
        *,
        step: int,
        epoch: int,
        adapter_uri: str,
        state_uri: str,
        metrics: job_pb2.Metrics,
        lora_rank: int,
    ) -> None:
        """ReportCheckpoint for an uploaded checkpoint; events queued before it are sent first."""
        await self.flush()
        request = worker_service_pb2.ReportCheckpointRequest(
            worker=self._identity,
            step_number=step,
            epoch=epoch,
            adapter_uri=adapter_uri,
            state_uri=state_uri,
            metrics=metrics,
            lora_rank=lora_rank,
        )
        response = await self._call(self._stub.ReportCheckpoint, request)
        self._obey(response.directive)

    async def succeeded(
        self, *, adapter_uri: str, trained_tokens: int, result_files: list[str], lora_rank: int
    ) -> None:
        """ReportSucceeded, after the queued events; no report follows it (see :meth:`_send_events`)."""
        request = worker_service_pb2.ReportSucceededRequest(
            worker=self._identity,
            adapter_uri=adapter_uri,
            trained_tokens=trained_tokens,
            result_files=result_files,
            lora_rank=lora_rank,
        )
        async with self._send_lock:
            await self._send_events()
            await self._call(self._stub.ReportSucceeded, request)
            self._outcome_is_reported()

    async def failed(self, error: job_pb2.JobError, *, retryable: bool) -> None:
        """ReportFailed. Queued events are sent first when the trainer takes them; the failure matters more."""
        request = worker_service_pb2.ReportFailedRequest(
            worker=self._identity, error=error, retryable=retryable
        )
        async with self._send_lock:
            try:
                await self._send_events()
            except (grpc.aio.AioRpcError, ReportRefused):
                pass
            await self._call(self._stub.ReportFailed, request)
            self._outcome_is_reported()

    def _outcome_is_reported(self) -> None:
        self._outcome_reported = True
        self._wake.set()  # the heartbeat task ends at once instead of at its next beat

    async def _call(
        self,
        method: Callable[..., Awaitable[ResponseT]],
        request: object,
        *,
        retry_delays: tuple[float, ...] = REPORT_RETRY_DELAYS_S,
    ) -> ResponseT:
        """One RPC, retried while the trainer is unreachable; a refusal raises ReportRefused."""
        for delay in (*retry_delays, None):
            try:
                return await method(request)
            except grpc.aio.AioRpcError as error:
                if error.code() in _REFUSALS:
                    self.request_stop(Stop.REFUSED)
                    raise ReportRefused(error.details() or error.code().name) from error
                if error.code() not in _TRANSIENT or delay is None:
                    raise TrainerUnreachable(f"{error.code().name}: {error.details()}") from error
                log.warning("report not taken; retrying", code=error.code().name, retry_in_s=delay)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    # Events and heartbeats.

    def post(self, event: worker_service_pb2.WorkerEvent) -> None:
        """Queue an event for the next ReportEvents. Safe to call from any thread."""
        self._events.append(event)
        self._loop.call_soon_threadsafe(self._wake.set)

    async def flush(self) -> None:
        """Send the queued events now (an empty list is a heartbeat). Kept queued if the call fails."""
        async with self._send_lock:
            await self._send_events()

    async def _send_events(self) -> None:
        """:meth:`flush` under the send lock, which the outcome reports hold too: a heartbeat that
        was waiting for it when the outcome went out finds the attempt over and sends nothing."""
        if self._outcome_reported:
            return
        events = []
        while self._events:
            events.append(self._events.popleft())
        request = worker_service_pb2.ReportEventsRequest(
            worker=self._identity, events=events, current_step=self.current_step
        )
        try:
            response = await self._stub.ReportEvents(request, timeout=max(self.heartbeat_interval_s, 5.0))
        except grpc.aio.AioRpcError as error:
            if error.code() in _REFUSALS:
                self.request_stop(Stop.REFUSED)
                raise ReportRefused(error.details() or error.code().name) from error
            self._events.extendleft(reversed(events))
            raise
        self._obey(response.directive)

    async def heartbeats(self) -> None:
        """Run until cancelled or the outcome is reported: send queued events as they come, and a
        heartbeat at least every interval."""
        while not self._outcome_reported:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancel that
            # arrives as the event is set, and then this loop never ends when run.py stops it.
            try:
                async with asyncio.timeout(self.heartbeat_interval_s):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            if self._outcome_reported:
                return
            try:
                await self.flush()
            except ReportRefused:
                return
            except grpc.aio.AioRpcError as error:
                # The trainer presumes a worker lost only after several missed heartbeats; try again next time.
                log.warning("heartbeat not delivered", code=error.code().name, details=error.details())
            await asyncio.sleep(MIN_REPORT_GAP_S)
