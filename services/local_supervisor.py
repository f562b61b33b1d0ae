"""How ``make up`` keeps its services running: start, wait for health, restart a crashed one, stop all.

:mod:`services.local_stack` decides what runs (which services, their environments); this
module runs them.

**Start-up.** The children are started and waited for until each answers its health
check. A service that exits before the stack was first up is not restarted: one that
never came up is misconfigured (its port taken, a bad setting), and retrying would only
delay the message. The launcher names it and its exit, stops the others and exits 1.

**Crashes.** A service that exits while the stack runs (a crash, the OOM killer, a stray
``kill``) is restarted after a backoff: 1 s, doubling to at most 30 s, and back to 1 s once
a restarted service has stayed healthy for 60 s (:class:`RestartPolicy`). Each exit is one
line naming the service, its exit code or signal and when it restarts; the restart says
when it answers health again. A restarted service that exits before it answers health
counts as one more crash. The other services keep running meanwhile: the gateway answers
503 for what needs the missing one, and its gRPC channels reconnect by themselves.

**Giving up.** The 5th crash of one service within 5 minutes gives up on it, and the
launcher then stops the whole stack and exits 1, as at start-up. A stack that went on
without the service would look up but answer 503 to everything that needs it, for ever,
with the reason scrolled away; exiting says it once, last, and lets whatever runs the
launcher (a terminal, systemd, CI) see the failure.

**Stopping.** Ctrl-C or SIGTERM sets ``stop``: a pending backoff or health wait ends at
once, nothing is restarted any more, and every child gets SIGTERM, then SIGKILL after the
grace period.

The backoff is this module's own few lines rather than tenacity's: tenacity retries a call
until it succeeds, while here a run that stayed healthy resets the backoff and crashes are
budgeted per window, which would take custom stop and wait callbacks around a loop that
does nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.backoff import doubling_delay

HEALTH_POLL_S = 0.2
EXIT_POLL_S = 0.2


def say(message: str) -> None:
    print(f"[tailor] {message}", flush=True)


@dataclass
class Child:
    """One service process and how to tell it is up."""

    name: str
    health_target: str  # host:port for gRPC health, or an http URL
    process: subprocess.Popen[bytes] | None = None
    module: str = ""  # services.<module>; the name when empty
    env: dict[str, str] = field(default_factory=dict)  # on top of the stack's environment


@dataclass(frozen=True)
class RestartPolicy:
    """When a crashed service is restarted, and when the launcher gives up on it."""

    first_delay_s: float = 1.0
    max_delay_s: float = 30.0
    # A service healthy this long before it crashed starts the backoff over.
    reset_after_healthy_s: float = 60.0
    # This many crashes of one service within the window give up on it.
    max_crashes: int = 5
    crash_window_s: float = 300.0


class CrashRecord:
    """One service's recent crashes, and what :class:`RestartPolicy` makes of the next one."""

    def __init__(self, policy: RestartPolicy) -> None:
        self._policy = policy
        self._times: deque[float] = deque()
        self._in_a_row = 0

    @property
    def recent(self) -> int:
        """Crashes within the window, as of the last one recorded."""
        return len(self._times)

    def restart_delay(self, *, at: float, healthy_for: float | None) -> float | None:
        """Records a crash at ``at`` (monotonic seconds) of a service that had been healthy for
        ``healthy_for`` seconds (None: it never answered health): the seconds to wait before
        restarting it, or None to give up on it."""
        policy = self._policy
        if healthy_for is not None and healthy_for >= policy.reset_after_healthy_s:
            self._in_a_row = 0
        self._in_a_row += 1
        self._times.append(at)
        while at - self._times[0] > policy.crash_window_s:
            self._times.popleft()
        if len(self._times) >= policy.max_crashes:
            return None
        return doubling_delay(self._in_a_row, policy.first_delay_s, policy.max_delay_s)


def describe_exit(returncode: int) -> str:
    """``code 3`` or ``signal SIGKILL`` (Popen gives a death by signal N as -N)."""
    if returncode >= 0:
        return f"code {returncode}"
    try:
        return f"signal {signal.Signals(-returncode).name}"
    except ValueError:
        return f"signal {-returncode}"


async def is_healthy(child: Child) -> bool:
    if child.health_target.startswith("http"):
        try:
            async with httpx.AsyncClient(timeout=2.0) as client:
                return (await client.get(child.health_target)).status_code == 200
        except httpx.HTTPError:
            return False
    async with grpc.aio.insecure_channel(child.health_target) as channel:
        try:
            response = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=2.0
            )
        except grpc.aio.AioRpcError:
            return False
        return response.status == health_pb2.HealthCheckResponse.SERVING


class Supervisor:
    """Runs the stack's children; ``start`` launches one (sets its ``process``). See the module docstring."""

    def __init__(
        self,
        start: Callable[[Child], None],
        stop: asyncio.Event,
        *,
        startup_timeout_s: float,
        policy: RestartPolicy | None = None,
    ) -> None:
        self._start = start
        self._stop = stop
        self._startup_timeout_s = startup_timeout_s
        self._policy = policy or RestartPolicy()
        self.gave_up: list[str] = []  # the services given up on

    async def start_all(self, children: list[Child]) -> bool:
        """Starts ``children`` and waits until each answers health; False (said why) if one exits,
        one is not up in time, or the stack is stopping."""
        for child in children:
            self._start(child)
        if await self._wait_until_healthy(children, "is up"):
            return True
        for child in children:
            assert child.process is not None
            if child.process.poll() is not None:
                say(f"{child.name} exited with {describe_exit(child.process.returncode)} while starting")
        return False

    async def run(self, children: list[Child]) -> int:
        """Keeps ``children`` (all up) running until ``stop`` is set: 0, or 1 when one was given up on."""
        await asyncio.gather(*(self._keep_running(child) for child in children))
        return 1 if self.gave_up else 0

    async def _keep_running(self, child: Child) -> None:
        crashes = CrashRecord(self._policy)
        up_since: float | None = time.monotonic()
        while True:
            returncode = await self._exit_of(child)
            if returncode is None:
                return  # the stack is stopping
            now = time.monotonic()
            delay = crashes.restart_delay(at=now, healthy_for=None if up_since is None else now - up_since)
            how, window = describe_exit(returncode), f"{self._policy.crash_window_s:g}s"
            if delay is None:
                say(
                    f"{child.name} exited unexpectedly with {how}, {crashes.recent} crashes in "
                    f"{window}; giving up on it and stopping the stack"
                )
                self.gave_up.append(child.name)
                self._stop.set()
                return
            say(
                f"{child.name} exited unexpectedly with {how}; restarting it in {delay:g}s "
                f"(crashes in the last {window}: {crashes.recent}; at {self._policy.max_crashes} the stack stops)"
            )
            if await self._stopped_within(delay):
                return
            self._start(child)
            up_since = time.monotonic() if await self._wait_until_healthy([child], "is up again") else None

    async def _wait_until_healthy(self, children: list[Child], announcement: str) -> bool:
        """True once every child answers health (each announced); False when one exits, the
        start-up timeout passes (said here) or the stack is stopping."""
        deadline = time.monotonic() + self._startup_timeout_s
        pending = list(children)
        while pending and not self._stop.is_set():
            for child in list(pending):
                assert child.process is not None
                if child.process.poll() is not None:
                    return False
                if await is_healthy(child):
                    say(f"{child.name} {announcement} ({child.health_target})")
                    pending.remove(child)
            if time.monotonic() > deadline:
                names = ", ".join(c.name for c in pending)
                say(f"timed out after {self._startup_timeout_s:.0f}s waiting for {names}")
                return False
            if pending:
                await self._stopped_within(HEALTH_POLL_S)
        return not pending

    async def _exit_of(self, child: Child) -> int | None:
        """Waits until the child exits (its return code) or the stack is stopping (None)."""
        assert child.process is not None
        while True:
            returncode = child.process.poll()
            if returncode is not None:
                return None if self._stop.is_set() else returncode
            if await self._stopped_within(EXIT_POLL_S):
                return None

    async def _stopped_within(self, seconds: float) -> bool:
        """Sleeps up to ``seconds``; True at once when the stack is stopping."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stop.wait()
        return self._stop.is_set()


def stop_children(children: list[Child], grace_s: float) -> None:
    """SIGTERM every child, wait for the grace period, then SIGKILL whatever is left."""
    running = [c for c in children if c.process is not None and c.process.poll() is None]
    for child in running:
        child.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
    deadline = time.monotonic() + grace_s
    for child in running:
        try:
            child.process.wait(timeout=max(0.0, deadline - time.monotonic()))  # type: ignore[union-attr]
        except subprocess.TimeoutExpired:
            say(f"{child.name} did not stop in {grace_s:.0f}s; killing it")
            child.process.kill()  # type: ignore[union-attr]
            child.process.wait()  # type: ignore[union-attr]
