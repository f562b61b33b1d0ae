"""The local executor: one worker subprocess per job attempt, on the trainer's machine.

A subprocess gives crash isolation (a worker that dies takes nothing else with it)
and frees its GPU memory when it exits. Each worker runs in its own process group,
so stopping it also stops whatever it started. On Linux it is started through
:mod:`die_with_parent <services.common.die_with_parent>`, so the kernel
kills it when the trainer dies (``PR_SET_PDEATHSIG``, SIGKILL: reports to a dead
trainer go nowhere, and the GPU must be free for the attempt that replaces it): a
trainer that is killed and restarted relaunches its jobs, and must not find the old
workers still training beside the new.

The worker's environment is built from an allow-list (:func:`local_worker_environment`),
not copied from the trainer's: the trainer's own secrets (its database URL, its object store
credentials, and whatever else its launcher handed it) never reach a worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
import shutil
import signal
import sys

import structlog

from services.common.die_with_parent import dying_with
from services.trainer.config import TrainerSettings
from services.trainer.executors.base import RUNNING, Executor, WorkerLaunch, WorkerStatus
from services.trainer.worker.config import WorkerSettings

log = structlog.get_logger("tailor.trainer.local")

# What a worker process takes from the trainer's environment besides the TAILOR_* settings
# the scheduler gives it: how to find programs and libraries, locale and temp dirs, the
# model hub's cache, and the knobs of torch and its math and GPU libraries.
_INHERITED = re.compile(
    r"^(PATH|HOME|USER|LOGNAME|SHELL|LANG|LANGUAGE|LC_[A-Z]+|TZ|TMPDIR|TEMP|TMP|TERM"
    r"|PYTHON[A-Z_]*|VIRTUAL_ENV|LD_LIBRARY_PATH|LD_PRELOAD|XDG_[A-Z_]+|SSL_CERT_(FILE|DIR)"
    r"|REQUESTS_CA_BUNDLE|CURL_CA_BUNDLE|HF_[A-Z_]+|HUGGINGFACE_[A-Z_]+|TRANSFORMERS_[A-Z_]+"
    r"|TOKENIZERS_PARALLELISM|TORCH[A-Z_]*|PYTORCH_[A-Z_]+|CUDA_[A-Z_]+|NVIDIA_[A-Z_]+|NCCL_[A-Z_]+"
    r"|CUBLAS_[A-Z_]+|CUDNN_[A-Z_]+|TRITON_[A-Z_]+|OMP_[A-Z_]+|MKL_[A-Z_]+|KMP_[A-Z_]+"
    r"|OPENBLAS_[A-Z_]+|COVERAGE_[A-Z_]+)$"
)
# The worker's own knobs (TAILOR_WORKER_*: device, dtype, batch size...) set on the trainer.
_WORKER_KNOBS = frozenset(
    f"TAILOR_{name.upper()}" for name in WorkerSettings.model_fields if name.startswith("worker_")
)

# A worker moves checkpoints through the trainer's WorkerService: no object store setting or
# credential reaches it, whoever set it.
_OBJECT_STORE_VARIABLES = ("TAILOR_OBJECT_STORE_",)


def local_worker_environment(
    trainer_environment: dict[str, str], environment: dict[str, str]
) -> dict[str, str]:
    """A worker's environment: ``environment`` (the scheduler's, for its job) over the allowed
    part of the trainer's; never an object store setting (a worker has no object store access)."""
    inherited = {
        name: value
        for name, value in trainer_environment.items()
        if _INHERITED.match(name) or name in _WORKER_KNOBS
    }
    return {
        name: value
        for name, value in {**inherited, **environment}.items()
        if not name.startswith(_OBJECT_STORE_VARIABLES)
    }


def local_command(command: str) -> list[str]:
    """The worker's argv: a leading ``python`` becomes the trainer's own interpreter (same virtualenv)."""
    argv = shlex.split(command)
    if argv and argv[0] == "python":
        argv[0] = sys.executable
    elif argv:
        # die_with_parent execs a path, without a search of PATH.
        argv[0] = shutil.which(argv[0]) or argv[0]
    return argv


class LocalExecutor(Executor):
    """Workers as child processes of the trainer."""

    def __init__(self, settings: TrainerSettings) -> None:
        self._argv = local_command(settings.trainer_worker_command)
        self._stop_grace_s = settings.trainer_worker_stop_grace_s
        self._processes: dict[str, asyncio.subprocess.Process] = {}

    async def launch(self, launch: WorkerLaunch, environment: dict[str, str]) -> None:
        # Only the allowed part of the trainer's environment (PATH, PYTHONPATH, the worker knobs).
        process = await asyncio.create_subprocess_exec(
            *dying_with(os.getpid(), self._argv),
            env=local_worker_environment(dict(os.environ), environment),
            stdin=asyncio.subprocess.DEVNULL,
            start_new_session=True,
        )
        self._processes[launch.attempt_id] = process
        log.info("worker started", job_id=launch.job_id, attempt_id=launch.attempt_id, pid=process.pid)

    async def status(self, launch: WorkerLaunch) -> WorkerStatus:
        process = self._processes.get(launch.attempt_id)
        if process is None:
            # Not one of ours: after a trainer restart, the old workers died with the old trainer.
            return WorkerStatus(running=False, detail="the worker process is gone")
        if process.returncode is None:
            return RUNNING
        return WorkerStatus(
            running=False, exit_code=process.returncode, detail=_exit_detail(process.returncode)
        )

    async def stop(self, launch: WorkerLaunch) -> None:
        process = self._processes.get(launch.attempt_id)
        if process is None or process.returncode is not None:
            return
        _signal_group(process, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), timeout=self._stop_grace_s)
        except TimeoutError:
            log.warning("worker ignored SIGTERM; killing it", job_id=launch.job_id, pid=process.pid)
            _signal_group(process, signal.SIGKILL)
            await process.wait()

    async def release(self, launch: WorkerLaunch) -> None:
        self._processes.pop(launch.attempt_id, None)

    async def close(self) -> None:
        """Stops every worker still running: they would die with the trainer anyway."""
        launches = [WorkerLaunch("", attempt_id, "") for attempt_id in self._processes]
        await asyncio.gather(*(self.stop(launch) for launch in launches))
        self._processes.clear()


def _signal_group(process: asyncio.subprocess.Process, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)


def _exit_detail(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = str(-returncode)
        return f"the worker process was killed by signal {name}"
    return f"the worker process exited with code {returncode}"
