"""The executor interface: launch a worker for one attempt of a job, ask how it is, stop it.

An executor knows nothing of jobs' states; the scheduler decides, the executor runs
processes (or pods). A worker is identified by its :class:`WorkerLaunch`: the job,
the attempt (a fresh id per launch) and the organization. What a worker needs to
know arrives in its environment (see :func:`worker_environment`), the rest it asks
the trainer for with ClaimJob.
"""

from __future__ import annotations

import json
import secrets
from abc import ABC, abstractmethod
from dataclasses import dataclass

from pydantic import SecretStr

from services.common.settings import CommonSettings

ATTEMPT_PREFIX = "attempt-"
# A worker never gets the trainer's signing key or identity: it authenticates with the
# job-scoped token of its launch (TAILOR_WORKER_TOKEN) and verifies no one.
TRAINER_ONLY_SETTINGS = frozenset(
    {"internal_auth_private_key_file", "internal_auth_identity", "internal_auth_public_keys_dir"}
)
WORKER_TOKEN_VARIABLE = "TAILOR_WORKER_TOKEN"
# A worker has no object store access (its checkpoints go through WorkerService), so none of
# the object store's settings, credentials least of all, is handed on.
WORKER_WITHHELD_PREFIXES = ("object_store_",)


def new_attempt_id() -> str:
    """A fresh attempt id; lowercase hex so that it can also name a Kubernetes object."""
    return ATTEMPT_PREFIX + secrets.token_hex(8)


@dataclass(frozen=True)
class WorkerLaunch:
    """One attempt at training a job: what an executor starts, watches and stops."""

    job_id: str
    attempt_id: str
    organization_id: str


@dataclass(frozen=True)
class WorkerStatus:
    """How a launched worker is: still running, or gone (with its exit code when known)."""

    running: bool
    exit_code: int | None = None
    detail: str = ""


RUNNING = WorkerStatus(running=True)


class Executor(ABC):
    """Runs training workers somewhere: local subprocesses or Kubernetes Jobs."""

    @abstractmethod
    async def launch(self, launch: WorkerLaunch, environment: dict[str, str]) -> None:
        """Starts the worker; raises when it cannot be started."""

    @abstractmethod
    async def status(self, launch: WorkerLaunch) -> WorkerStatus:
        """Whether the worker still runs. A worker this executor cannot find is reported gone."""

    @abstractmethod
    async def stop(self, launch: WorkerLaunch) -> None:
        """Stops the worker (terminate, then kill after the grace period); a gone worker is fine."""

    @abstractmethod
    async def release(self, launch: WorkerLaunch) -> None:
        """Forgets a worker that is gone."""

    @abstractmethod
    async def close(self) -> None:
        """Called when the trainer stops."""


def worker_environment(
    settings: CommonSettings,
    launch: WorkerLaunch,
    *,
    trainer_addr: str,
    include_secrets: bool,
    worker_token: str = "",
    overrides: dict[str, str] | None = None,
) -> dict[str, str]:
    """The TAILOR_* variables a worker starts with: the shared settings, where the trainer is, its attempt.

    The settings are written out from the trainer's own (not copied from its
    environment) so that a trainer configured in code (tests) hands on the same values.
    Secrets are left out when the environment ends up in a manifest (Kubernetes passes
    them through Secrets instead). The trainer's own internal-auth key and identity and
    every object store setting are never handed on; ``worker_token`` (the launch's
    job-scoped token) is, as TAILOR_WORKER_TOKEN.
    """
    environment: dict[str, str] = {}
    dumped = settings.model_dump(mode="json", include=set(CommonSettings.model_fields))
    for name in CommonSettings.model_fields:
        if name in TRAINER_ONLY_SETTINGS or name.startswith(WORKER_WITHHELD_PREFIXES):
            continue
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            if not include_secrets:
                continue
            text = value.get_secret_value()
        else:
            text = _env_text(dumped[name])
        environment[f"TAILOR_{name.upper()}"] = text
    environment.update(
        TAILOR_TRAINER_ADDR=trainer_addr,
        TAILOR_WORKER_JOB_ID=launch.job_id,
        TAILOR_WORKER_ATTEMPT_ID=launch.attempt_id,
        TAILOR_WORKER_ORGANIZATION=launch.organization_id,
    )
    if worker_token:
        environment[WORKER_TOKEN_VARIABLE] = worker_token
    environment.update(overrides or {})
    return environment


def _env_text(value: object) -> str:
    # pydantic-settings reads complex values as JSON and booleans as true/false.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)
