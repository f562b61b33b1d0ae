"""One sample's outcome and what it adds to its run's counts."""

from __future__ import annotations

from services.trainer.evals.grading import grade_sample, sample_mapping, tally
from services.trainer.evals.records import EvalRunRecord
from tailor.trainer.v1 import eval_service_pb2 as pb

EXACT = pb.TestingCriterion(
    name="exact",
    string_check=pb.StringCheckGrader(input="{{ sample.output_text }}", reference="{{ item.a }}", operation="eq"),
)
LABEL = pb.TestingCriterion(
    name="label",
    string_check=pb.StringCheckGrader(
        input="{{ sample.output_json.label }}", reference="{{ item.a }}", operation="eq"
    ),
)


def sample(text: str, **fields: object) -> pb.EvalSample:
    return pb.EvalSample(output=[pb.EvalMessage(role="assistant", content=text)], **fields)


def new_run() -> EvalRunRecord:
    return EvalRunRecord(
        model="base",
        total=4,
        errored=0,
        failed=0,
        passed=0,
        per_criterion={"exact": {"passed": 0, "failed": 0}},
        usage={},
    )


def test_the_sample_mapping_is_the_answer_text_and_its_json() -> None:
    split = pb.EvalSample(output=[pb.EvalMessage(content='{"label": '), pb.EvalMessage(content="1}")])
    assert sample_mapping(split) == {"output_text": '{"label": 1}', "output_json": {"label": 1}}
    assert sample_mapping(sample("plain")) == {"output_text": "plain"}


def test_outcomes() -> None:
    assert grade_sample([EXACT], {"a": "4"}, sample("4")).status == "pass"
    failed = grade_sample([EXACT], {"a": "4"}, sample("5"))
    assert failed.status == "fail" and [(g.name, g.passed) for g in failed.grades] == [("exact", False)]
    sampling = grade_sample([EXACT], {"a": "4"}, pb.EvalSample(error_code="timeout", error_message="slow"))
    assert (sampling.status, sampling.grades, sampling.answered) == ("error", [], False)
    unfillable = grade_sample([LABEL], {"a": "4"}, sample("not json"))
    assert (unfillable.status, unfillable.sample.error_code, unfillable.answered) == (
        "error",
        "template_error",
        True,
    )
    assert "sample.output_json" in unfillable.sample.error_message
    assert unfillable.sample.output[0].content == "not json", "the answer is kept"


def test_tally_counts_items_criteria_and_usage_per_model() -> None:
    run = new_run()
    tally(run, grade_sample([EXACT], {"a": "4"}, sample("4", model="ft:x", prompt_tokens=5, completion_tokens=1)))
    tally(run, grade_sample([EXACT], {"a": "4"}, sample("5", prompt_tokens=5, completion_tokens=2)))
    tally(run, grade_sample([EXACT], {"a": "4"}, pb.EvalSample(error_code="timeout")))
    assert (run.passed, run.failed, run.errored) == (1, 1, 1)
    assert run.per_criterion == {"exact": {"passed": 1, "failed": 1}}
    assert run.usage["ft:x"]["total_tokens"] == 6 and run.usage["ft:x"]["invocation_count"] == 1
    assert run.usage["base"] == {
        "invocation_count": 1,
        "prompt_tokens": 5,
        "completion_tokens": 2,
        "total_tokens": 7,
        "cached_tokens": 0,
    }
