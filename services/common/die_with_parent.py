"""Runs a command that the kernel kills when the process that started it dies.

``python die_with_parent.py <parent pid> <program> [args...]`` asks for SIGKILL on the
parent's death (``PR_SET_PDEATHSIG``, kept across exec), checks the parent is still
there, and execs the program in its own place, so the program is the direct child of
the parent. The trainer's local executor starts workers this way, and ``make up`` its
services, rather than with ``preexec_fn``: Python code between fork and exec in a
process with threads (gRPC's, torch's) can crash the child before it ever starts.

Run by path, not as a module, so that it imports nothing of Tailor; build the command
with :func:`dying_with`.
"""

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def dying_with(parent_pid: int, argv: list[str]) -> list[str]:
    """``argv`` wrapped so that the kernel kills it when ``parent_pid`` dies (Linux only)."""
    if not sys.platform.startswith("linux"):
        return argv
    # -S: the wrapper needs no site-packages, and starts faster without them.
    return [sys.executable, "-S", os.path.abspath(__file__), str(parent_pid), *argv]


def main() -> None:
    parent_pid, argv = int(sys.argv[1]), sys.argv[2:]
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        sys.exit(1)
    os.execv(argv[0], argv)


if __name__ == "__main__":
    main()
