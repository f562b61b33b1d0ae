"""Evals against the real trainer: create, run from inline items and files, claim, record, grade, end.

The test plays both the gateway's API side (calls for an organization) and its sampler
(ClaimEvalSamples / RecordEvalSamples without one), on SQLite and on Postgres.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from sqlalchemy import select

import tailor.trainer.v1.eval_service_pb2 as pb
import tailor.trainer.v1.eval_service_pb2_grpc as eval_grpc
from services.common.grpc_client import open_channel
from services.common.tenancy import call_context
from services.trainer.config import TrainerSettings
from services.trainer.records import TrainerRecords, WebhookEventRecord
from tailor.dataset.v1 import dataset_service_pb2 as dataset_pb2
from tests.integration.trainer.conftest import ORG, OTHER_ORG
from tests.integration.trainer.harness import FakeDataset, TrainerClient, eventually, refusal

SCHEMA = {
    "type": "object",
    "properties": {"question": {"type": "string"}, "answer": {"type": "string"}},
    "required": ["question", "answer"],
}
CRITERIA = [
    pb.TestingCriterion(
        name="exact",
        string_check=pb.StringCheckGrader(
            input="{{ sample.output_text }}", reference="{{ item.answer }}", operation="eq"
        ),
    ),
    pb.TestingCriterion(
        name="close",
        text_similarity=pb.TextSimilarityGrader(
            input="{{ sample.output_text }}",
            reference="{{ item.answer }}",
            evaluation_metric="fuzzy_match",
            pass_threshold=0.5,
        ),
    ),
]
TEMPLATE = [
    pb.MessageTemplate(role="system", content="Answer with a number."),
    pb.MessageTemplate(role="user", content="{{ item.question }}"),
]
QUESTIONS = [("What is 2 plus 2?", "4"), ("What is 3 plus 3?", "6"), ("What is 4 plus 4?", "8")]


def rows(pairs: list[tuple[str, str]] = QUESTIONS) -> list[str]:
    return [json.dumps({"item": {"question": q, "answer": a}}) for q, a in pairs]


def answer(index: int, text: str, **fields: Any) -> pb.SampledItem:
    """A sampled answer (10 prompt and 2 completion tokens unless given)."""
    fields = dict(model="tailor-tiny", prompt_tokens=10, completion_tokens=2) | fields
    output = [pb.EvalMessage(role="assistant", content=text)] if text else []
    return pb.SampledItem(item_index=index, sample=pb.EvalSample(output=output, finish_reason="stop", **fields))


def sampling_error(index: int, code: str, message: str) -> pb.SampledItem:
    """A sampling that failed before the model answered."""
    return answer(index, "", error_code=code, error_message=message, prompt_tokens=0, completion_tokens=0)


class EvalCalls:
    """EvalService called as an organization (API calls) or as the sampler (no organization)."""

    def __init__(self, stub: eval_grpc.EvalServiceStub) -> None:
        self.stub = stub

    async def call(self, organization: str | None, method: str, request: Any) -> Any:
        """The answer; for a Create/Get/Update/Cancel call, the one resource it holds."""
        with call_context(organization, None):
            answer = await getattr(self.stub, method)(request)
        fields = answer.DESCRIPTOR.fields
        if len(fields) == 1 and fields[0].name in ("eval", "run", "output_item"):
            return getattr(answer, fields[0].name)
        return answer

    async def create_eval(self, organization: str = ORG, **fields: Any) -> pb.Eval:
        fields.setdefault("name", "arithmetic")
        fields.setdefault("item_schema_json", json.dumps(SCHEMA))
        fields.setdefault("include_sample_schema", True)
        fields.setdefault("testing_criteria", CRITERIA)
        return await self.call(organization, "CreateEval", pb.CreateEvalRequest(**fields))

    async def create_run(self, eval_id: str, organization: str = ORG, **fields: Any) -> pb.EvalRun:
        fields.setdefault("model", "tailor-tiny")
        if "item_reference" not in fields:
            fields.setdefault("input_messages", TEMPLATE)
        if "file_id" not in fields:
            fields.setdefault("content", pb.InlineItems(rows_json=rows()))
        return await self.call(organization, "CreateEvalRun", pb.CreateEvalRunRequest(eval_id=eval_id, **fields))

    async def run(self, eval_id: str, run_id: str, organization: str = ORG) -> pb.EvalRun:
        return await self.call(organization, "GetEvalRun", pb.GetEvalRunRequest(eval_id=eval_id, run_id=run_id))

    async def claim(self, max_items: int = 64, lease_s: int = 60) -> pb.ClaimEvalSamplesResponse:
        request = pb.ClaimEvalSamplesRequest(sampler="test", max_items=max_items, lease_s=lease_s)
        return await self.call(None, "ClaimEvalSamples", request)

    async def record(self, run_id: str, *items: pb.SampledItem) -> pb.RecordEvalSamplesResponse:
        return await self.call(None, "RecordEvalSamples", pb.RecordEvalSamplesRequest(run_id=run_id, items=items))

    async def output_items(self, eval_id: str, run_id: str, status: str = "") -> list[pb.EvalRunOutputItem]:
        request = pb.ListEvalRunOutputItemsRequest(
            eval_id=eval_id, run_id=run_id, limit=100, ascending=True, status=status
        )
        return list((await self.call(ORG, "ListEvalRunOutputItems", request)).output_items)


@pytest.fixture
async def evals(trainer: TrainerClient, settings: TrainerSettings) -> AsyncIterator[EvalCalls]:
    channel = open_channel(trainer.address, settings)
    try:
        yield EvalCalls(eval_grpc.EvalServiceStub(channel))
    finally:
        await channel.close()


async def webhook_events(settings: TrainerSettings) -> list[tuple[str, str, str]]:
    """The outbox as (organization, type, object id), oldest first."""
    records = TrainerRecords.open(settings)
    try:
        async with records.read() as session:
            events = (await session.execute(select(WebhookEventRecord).order_by(WebhookEventRecord.seq))).scalars()
            return [(e.organization_id, e.type, e.object_id) for e in events]
    finally:
        await records.close()


async def test_an_inline_run_is_claimed_recorded_graded_and_completed(
    evals: EvalCalls, settings: TrainerSettings
) -> None:
    created = await evals.create_eval(metadata={"team": "math"})
    assert created.id.startswith("eval_") and created.metadata["team"] == "math"
    assert [c.name for c in created.testing_criteria] == ["exact", "close"]
    run = await evals.create_run(created.id, sampling_params=pb.EvalSamplingParams(temperature=0.0, seed=7))
    assert run.id.startswith("evalrun_") and run.status == pb.EVAL_RUN_STATUS_QUEUED
    assert run.result_counts.total == 3 and run.source_file_id == ""

    first = await evals.claim(max_items=2)
    assert (first.run_id, first.eval_id, first.organization_id, first.model) == (
        run.id, created.id, ORG, "tailor-tiny"
    )
    assert first.sampling_params.temperature == 0.0 and first.sampling_params.seed == 7
    assert [t.item_index for t in first.tasks] == [0, 1]
    assert [(m.role, m.content) for m in first.tasks[1].messages] == [
        ("system", "Answer with a number."),
        ("user", "What is 3 plus 3?"),
    ]
    assert (await evals.run(created.id, run.id)).status == pb.EVAL_RUN_STATUS_IN_PROGRESS

    assert not (await evals.record(run.id, answer(0, "4"), answer(1, "seven"))).run_cancelled
    second = await evals.claim()
    assert [t.item_index for t in second.tasks] == [2]
    assert (await evals.claim()).run_id == "", "every item is leased: no work"
    await evals.record(run.id, sampling_error(2, "upstream_error", "the model is gone"))

    done = await evals.run(created.id, run.id)
    assert done.status == pb.EVAL_RUN_STATUS_COMPLETED
    counts = done.result_counts
    assert (counts.total, counts.passed, counts.failed, counts.errored) == (3, 1, 1, 1)
    assert [(r.testing_criteria, r.passed, r.failed) for r in done.per_testing_criteria_results] == [
        ("exact", 1, 1),
        ("close", 1, 1),
    ]
    [usage] = done.per_model_usage
    assert (usage.model_name, usage.invocation_count, usage.prompt_tokens, usage.total_tokens) == (
        "tailor-tiny", 2, 20, 24
    )

    outputs = await evals.output_items(created.id, run.id)
    assert [(o.datasource_item_id, o.status) for o in outputs] == [(0, "pass"), (1, "fail"), (2, "error")]
    assert json.loads(outputs[0].datasource_item_json) == {"question": "What is 2 plus 2?", "answer": "4"}
    assert [(g.name, g.type, g.passed) for g in outputs[1].results] == [
        ("exact", "string_check", False),
        ("close", "text_similarity", False),
    ]
    assert outputs[2].sample.error_message == "the model is gone" and not outputs[2].results
    assert [o.id for o in await evals.output_items(created.id, run.id, status="fail")] == [outputs[1].id]
    one = await evals.call(
        ORG,
        "GetEvalRunOutputItem",
        pb.GetEvalRunOutputItemRequest(eval_id=created.id, run_id=run.id, output_item_id=outputs[0].id),
    )
    assert one.sample.output[0].content == "4"
    assert await webhook_events(settings) == [(ORG, "eval.run.succeeded", run.id)]


async def test_recording_again_changes_nothing(evals: EvalCalls) -> None:
    created = await evals.create_eval()
    run = await evals.create_run(created.id, content=pb.InlineItems(rows_json=rows(QUESTIONS[:2])))
    await evals.claim()
    await evals.record(run.id, answer(0, "4"))
    await evals.record(run.id, answer(0, "wrong"), answer(0, "wrong"))
    again = await evals.run(created.id, run.id)
    assert (again.result_counts.passed, again.result_counts.failed) == (1, 0)
    assert again.status == pb.EVAL_RUN_STATUS_IN_PROGRESS
    assert len(await evals.output_items(created.id, run.id)) == 1
    unknown = await refusal(evals.record(run.id, answer(5, "x")))
    assert (unknown.status, unknown.param) == (grpc.StatusCode.INVALID_ARGUMENT, "items[0].item_index")


async def test_an_expired_lease_is_handed_out_again(evals: EvalCalls) -> None:
    created = await evals.create_eval()
    run = await evals.create_run(created.id, content=pb.InlineItems(rows_json=rows(QUESTIONS[:1])))
    assert [t.item_index for t in (await evals.claim(lease_s=1)).tasks] == [0]
    assert (await evals.claim()).run_id == ""

    async def handed_out_again() -> pb.ClaimEvalSamplesResponse | None:
        claimed = await evals.claim()
        return claimed if claimed.run_id else None

    again = await eventually(handed_out_again, timeout=10, what="the expired lease to be claimable")
    assert (again.run_id, [t.item_index for t in again.tasks]) == (run.id, [0])
    await evals.record(run.id, answer(0, "4"))
    assert (await evals.run(created.id, run.id)).status == pb.EVAL_RUN_STATUS_COMPLETED


async def test_the_oldest_run_is_sampled_first_and_item_references_give_the_messages(evals: EvalCalls) -> None:
    schema = {"type": "object", "properties": {"input": {"type": "array"}}, "required": ["input"]}
    criterion = pb.TestingCriterion(
        name="says hi",
        string_check=pb.StringCheckGrader(input="{{ sample.output_text }}", reference="hi", operation="ilike"),
    )
    created = await evals.create_eval(item_schema_json=json.dumps(schema), testing_criteria=[criterion])
    conversation = [{"role": "developer", "content": "Be brief."}, {"role": "user", "content": "Greet me."}]
    older = await evals.create_run(
        created.id,
        item_reference="item.input",
        content=pb.InlineItems(rows_json=[json.dumps({"item": {"input": conversation}})]),
    )
    await evals.create_run(
        created.id,
        item_reference="item.input",
        content=pb.InlineItems(rows_json=[json.dumps({"item": {"input": conversation}})]),
    )
    claimed = await evals.claim()
    assert claimed.run_id == older.id
    assert [(m.role, m.content) for m in claimed.tasks[0].messages] == [
        ("developer", "Be brief."),
        ("user", "Greet me."),
    ]
    await evals.record(older.id, answer(0, "Hi there"))
    assert (await evals.run(created.id, older.id)).result_counts.passed == 1


async def test_a_run_of_only_errors_fails(evals: EvalCalls, settings: TrainerSettings) -> None:
    created = await evals.create_eval()
    run = await evals.create_run(created.id, content=pb.InlineItems(rows_json=rows(QUESTIONS[:1])))
    await evals.claim()
    await evals.record(run.id, sampling_error(0, "model_not_found", "no such model"))
    failed = await evals.run(created.id, run.id)
    assert failed.status == pb.EVAL_RUN_STATUS_FAILED
    assert failed.error_code == "all_items_errored" and "no such model" in failed.error_message
    assert await webhook_events(settings) == [(ORG, "eval.run.failed", run.id)]


async def test_a_run_from_an_uploaded_file(evals: EvalCalls, files: FakeDataset) -> None:
    created = await evals.create_eval()
    file_id = files.add_file(ORG, purpose=dataset_pb2.FILE_PURPOSE_EVALS)
    files.contents[file_id] = ("\n".join(rows()) + "\n\n").encode()
    run = await evals.create_run(created.id, file_id=file_id)
    assert (run.source_file_id, run.result_counts.total) == (file_id, 3)
    assert [t.item_index for t in (await evals.claim()).tasks] == [0, 1, 2]

    bad = files.add_file(ORG, purpose=dataset_pb2.FILE_PURPOSE_EVALS)
    lines = rows()
    lines[2] = json.dumps({"item": {"question": "What is 5 plus 5?", "answer": 10}})
    files.contents[bad] = "\n".join(lines).encode()
    error = await refusal(evals.create_run(created.id, file_id=bad))
    assert (error.status, error.param) == (grpc.StatusCode.INVALID_ARGUMENT, "data_source.source")
    assert error.message.startswith("data_source.source: line 3: ") and "item.answer" in error.message

    not_json = files.add_file(ORG, purpose=dataset_pb2.FILE_PURPOSE_EVALS)
    files.contents[not_json] = b'{"item": {}}\n{oops\n'
    assert "line 2: not valid JSON" in (await refusal(evals.create_run(created.id, file_id=not_json))).message

    fine_tune = files.add_file(ORG)
    error = await refusal(evals.create_run(created.id, file_id=fine_tune))
    assert error.param == "data_source.source.id" and "evals" in error.message
    foreign = files.add_file(OTHER_ORG, purpose=dataset_pb2.FILE_PURPOSE_EVALS)
    error = await refusal(evals.create_run(created.id, file_id=foreign))
    assert (error.status, error.param) == (grpc.StatusCode.INVALID_ARGUMENT, "data_source.source.id")
    runs = await evals.call(ORG, "ListEvalRuns", pb.ListEvalRunsRequest(eval_id=created.id))
    assert [r.id for r in runs.runs] == [run.id], "refused runs store nothing"


async def test_cancel_mid_run_stops_sampling(evals: EvalCalls, settings: TrainerSettings) -> None:
    created = await evals.create_eval()
    run = await evals.create_run(created.id)
    await evals.claim(max_items=1)
    await evals.record(run.id, answer(0, "4"))
    await evals.claim(max_items=1)
    request = pb.CancelEvalRunRequest(eval_id=created.id, run_id=run.id)
    cancelled = await evals.call(ORG, "CancelEvalRun", request)
    assert cancelled.status == pb.EVAL_RUN_STATUS_CANCELED and cancelled.result_counts.passed == 1
    assert (await evals.record(run.id, answer(1, "6"))).run_cancelled
    assert (await evals.claim()).run_id == ""
    assert len(await evals.output_items(created.id, run.id)) == 1, "graded items stay"
    assert await webhook_events(settings) == [(ORG, "eval.run.canceled", run.id)]
    again = await refusal(evals.call(ORG, "CancelEvalRun", request))
    assert (again.status, again.param) == (grpc.StatusCode.FAILED_PRECONDITION, "run_id")


async def test_deleting_a_run_or_an_eval_removes_it(evals: EvalCalls) -> None:
    created = await evals.create_eval()
    run = await evals.create_run(created.id)
    await evals.claim(max_items=1)
    await evals.call(ORG, "DeleteEvalRun", pb.DeleteEvalRunRequest(eval_id=created.id, run_id=run.id))
    assert (await refusal(evals.run(created.id, run.id))).status == grpc.StatusCode.NOT_FOUND
    assert (await evals.record(run.id, answer(0, "4"))).run_cancelled
    assert (await evals.claim()).run_id == ""

    other = await evals.create_run(created.id)
    deleted = await evals.call(ORG, "DeleteEval", pb.DeleteEvalRequest(eval_id=created.id))
    assert deleted.eval_id == created.id
    error = await refusal(evals.call(ORG, "GetEval", pb.GetEvalRequest(eval_id=created.id)))
    assert (error.status, error.param) == (grpc.StatusCode.NOT_FOUND, "eval_id")
    assert (await evals.record(other.id, answer(0, "4"))).run_cancelled
    assert (await evals.claim()).run_id == ""


async def test_another_organization_finds_nothing(evals: EvalCalls) -> None:
    created = await evals.create_eval()
    run = await evals.create_run(created.id)
    ids = dict(eval_id=created.id, run_id=run.id)
    for method, request in [
        ("GetEval", pb.GetEvalRequest(eval_id=created.id)),
        ("UpdateEval", pb.UpdateEvalRequest(eval_id=created.id, name="mine now")),
        ("DeleteEval", pb.DeleteEvalRequest(eval_id=created.id)),
        ("ListEvalRuns", pb.ListEvalRunsRequest(eval_id=created.id)),
        ("GetEvalRun", pb.GetEvalRunRequest(**ids)),
        ("CancelEvalRun", pb.CancelEvalRunRequest(**ids)),
        ("DeleteEvalRun", pb.DeleteEvalRunRequest(**ids)),
        ("ListEvalRunOutputItems", pb.ListEvalRunOutputItemsRequest(**ids)),
    ]:
        error = await refusal(evals.call(OTHER_ORG, method, request))
        assert error.status == grpc.StatusCode.NOT_FOUND, method
    refused = await refusal(evals.create_run(created.id, organization=OTHER_ORG))
    assert (refused.status, refused.param) == (grpc.StatusCode.NOT_FOUND, "eval_id")
    assert not (await evals.call(OTHER_ORG, "ListEvals", pb.ListEvalsRequest())).evals
    assert (await evals.run(created.id, run.id)).status == pb.EVAL_RUN_STATUS_QUEUED


async def test_evals_are_listed_updated_and_paged(evals: EvalCalls) -> None:
    first = await evals.create_eval(name="one")
    second = await evals.create_eval(name="two")
    newest = await evals.call(ORG, "ListEvals", pb.ListEvalsRequest(limit=1))
    assert [e.id for e in newest.evals] == [second.id] and newest.has_more
    rest = await evals.call(ORG, "ListEvals", pb.ListEvalsRequest(limit=1, after=second.id))
    assert [e.id for e in rest.evals] == [first.id] and not rest.has_more
    oldest = await evals.call(ORG, "ListEvals", pb.ListEvalsRequest(ascending=True))
    assert [e.id for e in oldest.evals] == [first.id, second.id]
    renamed = await evals.call(
        ORG, "UpdateEval", pb.UpdateEvalRequest(eval_id=first.id, name="uno", metadata={"k": "v"}, set_metadata=True)
    )
    assert (renamed.name, dict(renamed.metadata)) == ("uno", {"k": "v"})
    kept = await evals.call(ORG, "UpdateEval", pb.UpdateEvalRequest(eval_id=first.id))
    assert (kept.name, dict(kept.metadata)) == ("uno", {"k": "v"})


def _criterion(**string_check: str) -> pb.TestingCriterion:
    fields = dict(input="{{ sample.output_text }}", reference="{{ item.answer }}", operation="eq")
    fields.update(string_check)
    return pb.TestingCriterion(name="c", string_check=pb.StringCheckGrader(**fields))


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        (dict(item_schema_json="{not json"), "data_source_config.item_schema"),
        (dict(item_schema_json=json.dumps({"type": "array"})), "data_source_config.item_schema"),
        (dict(item_schema_json=json.dumps({"type": "object", "minProperties": "x"})), "data_source_config.item_schema"),
        (dict(item_schema_json=""), "data_source_config.item_schema"),
        (dict(testing_criteria=[_criterion(operation="startswith")]), "testing_criteria[0].operation"),
        (dict(testing_criteria=[_criterion(), _criterion()]), "testing_criteria[1].name"),
        (dict(testing_criteria=[]), "testing_criteria"),
        (dict(metadata={f"k{i}": "v" for i in range(17)}), "metadata"),
    ],
)
async def test_a_bad_eval_names_its_field(evals: EvalCalls, fields: dict[str, Any], param: str) -> None:
    error = await refusal(evals.create_eval(**fields))
    assert (error.status, error.param) == (grpc.StatusCode.INVALID_ARGUMENT, param)
    assert not (await evals.call(ORG, "ListEvals", pb.ListEvalsRequest())).evals


def _inline(*items: dict[str, Any]) -> pb.InlineItems:
    return pb.InlineItems(rows_json=[json.dumps({"item": item}) for item in items])


GOOD = {"question": "q", "answer": "a"}


@pytest.mark.parametrize(
    ("fields", "param", "words"),
    [
        (dict(model="ft:nope"), "data_source.model", "does not exist"),
        (dict(model=""), "data_source.model", "required"),
        (dict(content=_inline(GOOD, {"question": "q"})), "data_source.source.content", "content[1]: "),
        (dict(content=pb.InlineItems(rows_json=["[1]"])), "data_source.source.content", "content[0]: "),
        (dict(content=pb.InlineItems()), "data_source.source.content", "at least one"),
        (
            dict(input_messages=[pb.MessageTemplate(role="user", content="{{ sample.output_text }}")]),
            "data_source.input_messages.template[0].content",
            "item.",
        ),
        (
            dict(input_messages=[pb.MessageTemplate(role="user", content="{{ item.hint }}")]),
            "data_source.source.content",
            "content[0]: item.hint",
        ),
        (
            dict(input_messages=[pb.MessageTemplate(role="robot", content="hi")]),
            "data_source.input_messages.template[0].role",
            "one of",
        ),
        (dict(input_messages=[], item_reference=""), "data_source.input_messages", "either"),
        (dict(item_reference="sample.input"), "data_source.input_messages.item_reference", "item"),
        (dict(item_reference="item.question"), "data_source.source.content", "list of messages"),
        (
            dict(sampling_params=pb.EvalSamplingParams(temperature=3)),
            "data_source.sampling_params.temperature",
            "0 to 2",
        ),
        (dict(file_id=""), "data_source.source", "required"),
    ],
)
async def test_a_bad_run_names_its_field(
    evals: EvalCalls, fields: dict[str, Any], param: str, words: str
) -> None:
    created = await evals.create_eval()
    if "item_reference" in fields:
        fields["input_messages"] = fields.get("input_messages", [])
    error = await refusal(evals.create_run(created.id, **fields))
    assert (error.status, error.param) == (grpc.StatusCode.INVALID_ARGUMENT, param)
    assert words in error.message
    runs = await evals.call(ORG, "ListEvalRuns", pb.ListEvalRunsRequest(eval_id=created.id))
    assert not runs.runs


async def test_claims_are_checked(evals: EvalCalls) -> None:
    error = await refusal(evals.claim(max_items=0))
    assert (error.status, error.param) == (grpc.StatusCode.INVALID_ARGUMENT, "max_items")
    error = await refusal(evals.claim(lease_s=0))
    assert (error.status, error.param) == (grpc.StatusCode.INVALID_ARGUMENT, "lease_s")


class TestItemLimit:
    @pytest.fixture
    def settings(self, settings: TrainerSettings) -> TrainerSettings:
        return settings.model_copy(update=dict(trainer_eval_max_items=2))

    async def test_a_run_over_the_item_limit_is_refused(self, evals: EvalCalls) -> None:
        created = await evals.create_eval()
        error = await refusal(evals.create_run(created.id))
        assert (error.status, error.param) == (grpc.StatusCode.INVALID_ARGUMENT, "data_source.source.content")
        assert "at most 2 items" in error.message
