"""Why a job failed, in the terms the user sees: OpenAI's job ``error`` plus whether to retry.

Worker code raises :class:`JobFailure` for every failure it can explain (a bad line in a
file, a missing base model, an object store outage). :mod:`.run` reports what ended a job with
``ReportFailed``, as :func:`job_failure` maps it: the one place exceptions become codes, and
anything unexplained ``internal_error``. The codes are the ones agreed with the trainer, which
shows them to the user unchanged.
"""

from __future__ import annotations

import torch

from services.common.object_store import ObjectNotFound, ObjectStoreUnavailable

INVALID_TRAINING_FILE = "invalid_training_file"
INVALID_VALIDATION_FILE = "invalid_validation_file"
INVALID_HYPERPARAMETERS = "invalid_hyperparameters"
OUT_OF_MEMORY = "out_of_memory"
BASE_MODEL_UNAVAILABLE = "base_model_unavailable"
OBJECT_STORE_UNAVAILABLE = "object_store_unavailable"
DATASET_UNAVAILABLE = "dataset_unavailable"
INTERNAL_ERROR = "internal_error"


class JobFailure(Exception):
    """A failure that ends the job, with the message shown to the user.

    ``retryable`` says whether a new attempt from the last checkpoint could succeed (an outage,
    a crash), as opposed to a problem with the job's own input that would fail again.
    """

    def __init__(self, code: str, message: str, *, param: str = "", retryable: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param
        self.retryable = retryable

    def __repr__(self) -> str:
        return (
            f"JobFailure({self.code!r}, {self.message!r}, param={self.param!r}, retryable={self.retryable})"
        )


def invalid_file(file_param: str, line: int, reason: str) -> JobFailure:
    """The failure for a bad example: code ``invalid_training_file`` or ``invalid_validation_file``.

    ``file_param`` is the job field naming the file (``training_file`` or ``validation_file``);
    ``line`` is 1-based, 0 for a problem with the file as a whole.
    """
    where = f"line {line}: " if line else ""
    return JobFailure(
        f"invalid_{file_param}",
        f"The {file_param.replace('_', ' ')} is invalid: {where}{reason}",
        param=file_param,
    )


def job_failure(error: BaseException) -> JobFailure:
    """The user-facing failure for an exception that ended a job (the one mapping of errors to codes)."""
    if isinstance(error, JobFailure):
        return error
    if isinstance(error, torch.OutOfMemoryError | MemoryError):
        return JobFailure(
            OUT_OF_MEMORY,
            "Training ran out of memory. Use a smaller batch_size or shorter examples, or lower "
            "TAILOR_WORKER_MICRO_BATCH_TOKENS or enable TAILOR_WORKER_GRADIENT_CHECKPOINTING on the trainer.",
        )
    if isinstance(error, ObjectStoreUnavailable):
        return JobFailure(
            OBJECT_STORE_UNAVAILABLE, f"The object store is unavailable: {error.message}", retryable=True
        )
    if isinstance(error, ObjectNotFound | FileNotFoundError):
        return JobFailure(INTERNAL_ERROR, f"A stored checkpoint or adapter is missing: {error}")
    return JobFailure(INTERNAL_ERROR, "The training worker failed unexpectedly.", retryable=True)
