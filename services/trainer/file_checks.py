"""Whether a dataset file can be a job's training or validation file.

A file fits when it is fine-tuning data (purpose ``fine-tune``) that the dataset
service processed without errors, in a format the method trains on, and (for the
training file) with at least 10 examples, OpenAI's minimum. A file still being
processed is neither accepted nor refused: the job waits in ``validating_files``.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.common.errors import shown
from services.trainer.dataset_client import DatasetFiles
from tailor.dataset.v1 import dataset_service_pb2 as dataset_pb2
from tailor.trainer.v1 import job_pb2

MIN_TRAINING_EXAMPLES = 10
TRAINING_FILE = "training_file"
VALIDATION_FILE = "validation_file"

FORMATS_BY_METHOD = {
    job_pb2.METHOD_TYPE_SUPERVISED: (
        dataset_pb2.EXAMPLE_FORMAT_CHAT,
        dataset_pb2.EXAMPLE_FORMAT_PROMPT_COMPLETION,
    ),
    job_pb2.METHOD_TYPE_DPO: (dataset_pb2.EXAMPLE_FORMAT_PREFERENCE,),
}
_FORMAT_NAMES = {
    dataset_pb2.EXAMPLE_FORMAT_CHAT: "chat",
    dataset_pb2.EXAMPLE_FORMAT_PROMPT_COMPLETION: "prompt/completion",
    dataset_pb2.EXAMPLE_FORMAT_PREFERENCE: "preference",
    dataset_pb2.EXAMPLE_FORMAT_UNSPECIFIED: "unknown",
}
_METHOD_NAMES = {job_pb2.METHOD_TYPE_SUPERVISED: "supervised", job_pb2.METHOD_TYPE_DPO: "dpo"}


@dataclass(frozen=True)
class FileProblem:
    """Why a file cannot be used; ``param`` is the request field naming it."""

    param: str
    message: str

    @property
    def code(self) -> str:
        """OpenAI's code for a bad file: ``invalid_training_file`` or ``invalid_validation_file``."""
        return f"invalid_{self.param}"


def missing_file(param: str, file_id: str) -> FileProblem:
    return FileProblem(param, f"The {_role(param)} {shown(file_id)} does not exist.")


def is_processing(file: dataset_pb2.File) -> bool:
    """Whether the dataset service has not finished validating the file yet."""
    return file.status == dataset_pb2.FILE_STATUS_UPLOADED


def file_problem(file: dataset_pb2.File, param: str, method: int) -> FileProblem | None:
    """Why ``file`` cannot serve as ``param`` of a job of ``method``; None when it can (or is still processing)."""
    role = _role(param)
    if file.purpose != dataset_pb2.FILE_PURPOSE_FINE_TUNE:
        return FileProblem(param, f"The {role} {file.id} does not have purpose 'fine-tune'.")
    if file.status == dataset_pb2.FILE_STATUS_ERROR:
        details = f": {file.status_details}" if file.status_details else "."
        return FileProblem(param, f"The {role} {file.id} is invalid{details}")
    if is_processing(file):
        return None
    found = file.statistics.format
    expected = FORMATS_BY_METHOD[method]
    if found not in expected:
        wanted = " or ".join(_FORMAT_NAMES[f] for f in expected)
        return FileProblem(
            param,
            f"The {role} {file.id} holds {_FORMAT_NAMES.get(found, 'unknown')} examples; "
            f"the {_METHOD_NAMES[method]} method trains on {wanted} examples.",
        )
    if param == TRAINING_FILE and file.statistics.examples < MIN_TRAINING_EXAMPLES:
        return FileProblem(
            param,
            f"The {role} {file.id} has {file.statistics.examples} examples; "
            f"at least {MIN_TRAINING_EXAMPLES} are required.",
        )
    return None


def _role(param: str) -> str:
    return param.replace("_", " ")


@dataclass(frozen=True)
class FilesVerdict:
    """What the dataset service says about a job's files: a problem, or whether one is still processing."""

    problem: FileProblem | None = None
    processing: bool = False


async def check_files(
    dataset: DatasetFiles, training_file: str, validation_file: str, method: int
) -> FilesVerdict:
    """Checks a job's files in the current organization (a file of another one reads as missing)."""
    processing = False
    for param, file_id in ((TRAINING_FILE, training_file), (VALIDATION_FILE, validation_file)):
        if not file_id:
            continue
        file = await dataset.get_file(file_id)
        if file is None:
            return FilesVerdict(problem=missing_file(param, file_id))
        problem = file_problem(file, param, method)
        if problem is not None:
            return FilesVerdict(problem=problem)
        processing = processing or is_processing(file)
    return FilesVerdict(processing=processing)
