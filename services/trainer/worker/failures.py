"""Why a job failed, in the terms the user sees: OpenAI's job ``error`` plus whether to retry.

Worker code raises :class:`JobFailure` for every failure it can explain (a bad line in a
file, a missing base model, an object store outage). :mod:`.run` reports it with
``ReportFailed``; anything else becomes ``internal_error`` there. The codes are the ones
agreed with the trainer, which shows them to the user unchanged.
"""

from __future__ import annotations

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
