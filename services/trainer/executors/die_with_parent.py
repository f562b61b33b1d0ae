"""Runs a command that the kernel kills when the process that started it dies.

``python die_with_parent.py <parent pid> <program> [args...]`` asks for SIGKILL on the
parent's death (``PR_SET_PDEATHSIG``, kept across exec), checks the parent is still
there, and execs the program in its own place, so the program is the direct child of
the parent. The local executor starts workers this way rather than with
``preexec_fn``: Python code between fork and exec in a process with threads (the
trainer has gRPC's) can crash the child before it ever starts.

Run by path, not as a module, so that it imports nothing of Tailor.
"""

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


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
