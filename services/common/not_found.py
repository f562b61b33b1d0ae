"""The not-found answers users read, worded once, the way OpenAI words them.

Another organization's object answers exactly like a missing one, so these sentences are
the only ones a caller can get for "no such thing". Services raise them; the gateway's one
error mapping (:mod:`services.gateway.errors`) turns NOT_FOUND into a 404 carrying the
same message, ``param`` and ``code``, so no layer rewords them. An id longer than a real
one is shortened, so that an error never echoes a caller's megabyte back.
"""

from __future__ import annotations

from services.common.errors import NotFound, shown


def model_not_found_message(model: str) -> str:
    """OpenAI's sentence for a model the caller cannot use."""
    return f"The model `{shown(model)}` does not exist or you do not have access to it."


def model_not_found(model: str) -> NotFound:
    """Unknown, deleted and other organizations' models alike."""
    return NotFound(model_not_found_message(model), param="model", code="model_not_found")


def job_not_found(job_id: str) -> NotFound:
    """No fine-tuning job with this id in the caller's organization."""
    return NotFound(f"Could not find fine-tuning job: {shown(job_id)}", param="fine_tuning_job_id", code="not_found")


def file_not_found(file_id: str) -> NotFound:
    """No file with this id in the caller's organization."""
    return NotFound(f"No such File object: {shown(file_id)}", param="id", code="file_not_found")


def eval_not_found(eval_id: str) -> NotFound:
    """No eval with this id in the caller's organization."""
    return NotFound(f"Eval with id '{shown(eval_id)}' not found.", param="eval_id", code="not_found")


def eval_run_not_found(run_id: str) -> NotFound:
    """No run with this id of the named eval in the caller's organization."""
    return NotFound(f"Eval run with id '{shown(run_id)}' not found.", param="run_id", code="not_found")


def eval_output_item_not_found(output_item_id: str) -> NotFound:
    """No output item with this id in the named run."""
    return NotFound(
        f"Output item with id '{shown(output_item_id)}' not found.", param="output_item_id", code="not_found"
    )
