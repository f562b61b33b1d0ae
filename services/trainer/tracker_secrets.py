"""What a worker needs from the trainer to report to an organization's W&B: its key and server.

An organization provides its W&B API key as a file named by its organization id in
``trainer_wandb_keys_dir`` (an operator writes it, or mounts a Secret there). The key goes
to the worker of a job with a ``wandb`` integration in the worker's environment
(``WANDB_API_KEY``), never in the job's records, events, logs or the worker's argv. A
Kubernetes manifest would expose it, so pods get none and their runs are written offline.
"""

from __future__ import annotations

import structlog

from services.common.errors import InvalidArgument
from services.common.tenancy import validate_organization_id
from services.trainer.config import TrainerSettings

log = structlog.get_logger("tailor.trainer.tracker_secrets")

# The variables a worker reads them from (services/trainer/worker/tracking.py); W&B's own names.
API_KEY_VARIABLE = "WANDB_API_KEY"
BASE_URL_VARIABLE = "WANDB_BASE_URL"


def tracker_environment(
    settings: TrainerSettings, organization_id: str, *, include_secrets: bool
) -> dict[str, str]:
    """The W&B variables a worker of ``organization_id``'s tracked job starts with."""
    environment: dict[str, str] = {}
    if settings.trainer_wandb_base_url:
        environment[BASE_URL_VARIABLE] = settings.trainer_wandb_base_url
    key = organization_key(settings, organization_id) if include_secrets else ""
    if key:
        environment[API_KEY_VARIABLE] = key
    return environment


def organization_key(settings: TrainerSettings, organization_id: str) -> str:
    """The organization's W&B key, or "" when it has none (or the file cannot be read)."""
    directory = settings.trainer_wandb_keys_dir
    if directory is None:
        return ""
    try:
        # an organization id never names a path outside the directory (no '/', no '.')
        validate_organization_id(organization_id)
    except InvalidArgument:
        return ""
    path = directory / organization_id
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return ""
    except OSError as error:
        log.warning(
            "W&B key unreadable; the run goes offline", organization=organization_id, error=str(error)
        )
        return ""
