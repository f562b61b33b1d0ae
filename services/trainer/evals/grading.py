"""One sampled item's outcome (its grades and status) and what it adds to its run's counts.

The sample mapping graders see is :func:`templates.sample_namespace` of the answer's text:
``{"output_text": <the output messages' contents, joined>, "output_json": <that text parsed,
when it is JSON>}``. An item is ``error`` when sampling failed (the sampler recorded an
error) or a criterion's template could not be filled from it (the sample then carries
``error_code`` ``template_error`` and the template's message); otherwise ``pass`` when every
criterion passed, else ``fail``. Only graded items count in the per-criterion results; every
answer the model gave counts in the usage, under the model that gave it. A source row's own
``sample`` is kept with its item but not graded: every run samples its model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from services.trainer.evals.graders import Grade, grade
from services.trainer.evals.records import EvalRunRecord
from services.trainer.evals.templates import TemplateError, sample_namespace
from tailor.trainer.v1 import eval_service_pb2 as eval_pb2

PASS = "pass"
FAIL = "fail"
ERROR = "error"
TEMPLATE_ERROR = "template_error"


@dataclass(frozen=True)
class Outcome:
    """How one item came out: its status, its grades (none when errored), the sample as stored, and
    whether the model answered (its usage counts)."""

    status: str
    sample: eval_pb2.EvalSample
    grades: list[Grade] = field(default_factory=list)
    answered: bool = True


def output_text(sample: eval_pb2.EvalSample) -> str:
    """What the model answered, as one text: its output messages' contents, joined."""
    return "".join(message.content for message in sample.output)


def sample_mapping(sample: eval_pb2.EvalSample) -> dict[str, Any]:
    """The ``sample`` namespace the graders' templates read."""
    return sample_namespace(output_text(sample))


def sampling_failed(sample: eval_pb2.EvalSample) -> bool:
    return bool(sample.error_code or sample.error_message)


def errored(sample: eval_pb2.EvalSample, code: str, message: str, *, answered: bool) -> Outcome:
    """An error outcome: the sample kept, with why the item could not be graded."""
    stored = eval_pb2.EvalSample()
    stored.CopyFrom(sample)
    stored.error_code, stored.error_message = code, message
    return Outcome(ERROR, stored, answered=answered)


def grade_sample(
    criteria: Sequence[eval_pb2.TestingCriterion], item: Mapping[str, Any], sample: eval_pb2.EvalSample
) -> Outcome:
    """Grades one sample of one item against every criterion."""
    if sampling_failed(sample):
        return Outcome(ERROR, sample, answered=False)
    mapping = sample_mapping(sample)
    try:
        grades = [grade(criterion, item, mapping) for criterion in criteria]
    except TemplateError as error:
        return errored(sample, TEMPLATE_ERROR, str(error), answered=True)
    return Outcome(PASS if all(g.passed for g in grades) else FAIL, sample, grades)


def tally(run: EvalRunRecord, outcome: Outcome) -> None:
    """Adds one item's outcome to its run's counts (JSON columns are replaced, not changed in place)."""
    if outcome.status == ERROR:
        run.errored += 1
    elif outcome.status == PASS:
        run.passed += 1
    else:
        run.failed += 1
    if outcome.grades:
        per_criterion = {name: dict(counts) for name, counts in run.per_criterion.items()}
        for result in outcome.grades:
            counts = per_criterion.setdefault(result.name, {"passed": 0, "failed": 0})
            counts["passed" if result.passed else "failed"] += 1
        run.per_criterion = per_criterion
    sample = outcome.sample
    if outcome.answered or sample.prompt_tokens or sample.completion_tokens:
        usage = {name: dict(counts) for name, counts in run.usage.items()}
        counts = usage.setdefault(sample.model or run.model, _no_usage())
        counts["invocation_count"] += 1
        counts["prompt_tokens"] += sample.prompt_tokens
        counts["completion_tokens"] += sample.completion_tokens
        counts["total_tokens"] += sample.prompt_tokens + sample.completion_tokens
        run.usage = usage


def _no_usage() -> dict[str, int]:
    return {
        "invocation_count": 0,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "total_tokens": 0,
        "cached_tokens": 0,
    }
