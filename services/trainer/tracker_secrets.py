"""What a worker needs from the trainer to report to an organization's trackers: keys and servers.

An organization provides its W&B API key as a file named by its organization id in
``trainer_wandb_keys_dir`` (an operator writes it, or mounts a Secret there), and its MLflow
credentials the same way in ``trainer_mlflow_credentials_dir``. Each goes only to the workers
of jobs with an integration of its tracker, in the worker's environment (``WANDB_API_KEY``; mlflow's own
``MLFLOW_TRACKING_TOKEN`` or ``MLFLOW_TRACKING_USERNAME``/``PASSWORD``), never in the job's
records, events, logs or the worker's argv. A Kubernetes manifest would expose them, so pods
get none (their W&B runs are written offline, their MLflow servers must take them unauthenticated).

The user chooses an MLflow integration's server, so the organization's MLflow credentials
are handed out only where the deployment limits those servers (``trainer_mlflow_allowed_targets``):
otherwise any user of the organization could have them sent to a server of their own.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import structlog

from services.common.errors import InvalidArgument
from services.common.tenancy import validate_organization_id
from services.trainer.config import TrainerSettings

log = structlog.get_logger("tailor.trainer.tracker_secrets")

# The variables a worker reads them from (services/trainer/worker/tracking/wandb.py); W&B's own names.
API_KEY_VARIABLE = "WANDB_API_KEY"
BASE_URL_VARIABLE = "WANDB_BASE_URL"
# An MLflow credentials file's lines, ``name=value``, and the variables mlflow reads them from.
MLFLOW_CREDENTIAL_VARIABLES = {
    "token": "MLFLOW_TRACKING_TOKEN",
    "username": "MLFLOW_TRACKING_USERNAME",
    "password": "MLFLOW_TRACKING_PASSWORD",
}


def tracker_environment(
    settings: TrainerSettings, organization_id: str, *, trackers: Collection[str], include_secrets: bool
) -> dict[str, str]:
    """The tracker variables a worker of ``organization_id``'s job starts with, for the ``trackers``
    its integrations name (``wandb``, ``mlflow``): a job gets no credential of a tracker it does not use."""
    environment: dict[str, str] = {}
    if "wandb" in trackers:
        if settings.trainer_wandb_base_url:
            environment[BASE_URL_VARIABLE] = settings.trainer_wandb_base_url
        key = organization_key(settings, organization_id) if include_secrets else ""
        if key:
            environment[API_KEY_VARIABLE] = key
    if "mlflow" in trackers and include_secrets and settings.trainer_mlflow_allowed_targets:
        environment.update(mlflow_credentials(settings, organization_id))
    return environment


def mlflow_credentials(settings: TrainerSettings, organization_id: str) -> dict[str, str]:
    """The organization's MLflow variables from its ``token=`` or ``username=``/``password=`` lines."""
    text = _organization_file(settings.trainer_mlflow_credentials_dir, organization_id, "MLflow credentials")
    credentials = {}
    for line in text.splitlines():
        name, separator, value = line.partition("=")
        variable = MLFLOW_CREDENTIAL_VARIABLES.get(name.strip())
        if separator and variable and value.strip():
            credentials[variable] = value.strip()
        elif line.strip():
            # the line itself may hold a secret: name the file, not its content
            log.warning(
                "MLflow credentials: a line is not token=, username= or password=", organization=organization_id
            )
    return credentials


def organization_key(settings: TrainerSettings, organization_id: str) -> str:
    """The organization's W&B key, or "" when it has none (or the file cannot be read)."""
    return _organization_file(settings.trainer_wandb_keys_dir, organization_id, "W&B key").strip()


def _organization_file(directory: Path | None, organization_id: str, what: str) -> str:
    """The text of ``directory/organization_id``, or "" when there is none (or it cannot be read)."""
    if directory is None:
        return ""
    try:
        # an organization id never names a path outside the directory (no '/', no '.')
        validate_organization_id(organization_id)
    except InvalidArgument:
        return ""
    path = directory / organization_id
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""
    except OSError as error:
        log.warning(
            f"{what} unreadable; the worker goes without", organization=organization_id, error=str(error)
        )
        return ""
