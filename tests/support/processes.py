"""Child processes for tests: started with their output read line by line in the background.

Tests that run the platform as a user would (``make up``'s launcher, a gateway) wait for
what the process prints, and show its output when it never comes.
"""

from __future__ import annotations

import queue
import random
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path


# The kernel hands out ports in this range to every bind(port 0) and outgoing connection:
# vLLM's engine, torch.distributed, gRPC and HTTP clients all take ports from it while a
# test's stack starts. A port chosen from it and released could be taken by one of them
# before the service it was chosen for binds it (seen in CI: a vLLM start, then a stack that
# never came up), so test ports come from below it, and never twice in one test run.
_EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST_TEST_PORT = 10000
_handed_out: set[int] = set()


def ports_for_tests() -> range:
    """The ports :func:`free_port` chooses from: below (or else above) the kernel's ephemeral range."""
    try:
        low, high = (int(bound) for bound in _EPHEMERAL_RANGE_FILE.read_text().split())
    except (OSError, ValueError):  # not Linux: IANA's dynamic range starts at 49152
        low, high = 49152, 65535
    if low - _LOWEST_TEST_PORT >= 1000:
        return range(_LOWEST_TEST_PORT, low)
    if 65535 - high >= 1000:
        return range(high + 1, 65536)
    raise RuntimeError(f"no ports outside the ephemeral range {low}-{high} for tests to use")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now and no other caller got in this run.

    It lies outside the kernel's ephemeral range, so no process that binds port 0 or
    connects somewhere takes it before the service it is for binds it.
    """
    candidates = ports_for_tests()
    for _ in range(1000):
        port = random.choice(candidates)
        if port in _handed_out:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port on 127.0.0.1 in {candidates.start}-{candidates.stop - 1}")


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports, each as :func:`free_port` chooses them."""
    return [free_port() for _ in range(count)]


class OutputWatchedProcess:
    """A child process whose combined stdout/stderr is queued line by line, and kept."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.process = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)

    def wait_for(self, text: str, timeout: float) -> str:
        """The first line containing ``text``; fails with the output if it never comes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                if self.process.poll() is not None:
                    break
                continue
            self.output.append(line)
            if text in line:
                return line
        raise AssertionError(f"never printed {text!r}; output:\n{''.join(self.output[-200:])}")

    def drain(self) -> str:
        """Everything printed so far: all of it once the process has exited."""
        if self.process.poll() is not None:
            self._reader.join(timeout=10)  # the pipe's last lines, read after the exit
        while not self.lines.empty():
            self.output.append(self.lines.get())
        return "".join(self.output)

    def stop(self, timeout: float = 60) -> None:
        """SIGTERM, then SIGKILL if it has not exited within ``timeout``."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
