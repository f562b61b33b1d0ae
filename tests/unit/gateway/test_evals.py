"""/v1/evals through the SDK's client.evals: shapes as OpenAI publishes them, refusals naming the field, pages.

Runs are sampled by the gateway's own sampler against the fake trainer and the fake
inference (which answers "Ahoy from Tailor" to everything).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import openai
import pytest

from tests.support.openai_schemas import assert_matches
from tests.unit.gateway.conftest import KEY_B, Gateway, GatewayFactory
from tests.unit.gateway.fakes import BASE_MODEL

pytestmark = pytest.mark.filterwarnings("ignore:The Evals API is deprecated:DeprecationWarning")

REPLY = "Ahoy from Tailor"
ITEM_SCHEMA = {
    "type": "object",
    "properties": {"question": {"type": "string"}, "expected": {"type": "string"}},
    "required": ["question", "expected"],
}
CRITERIA: list[dict[str, Any]] = [
    {
        "type": "string_check",
        "name": "exact",
        "input": "{{sample.output_text}}",
        "reference": "{{item.expected}}",
        "operation": "eq",
    },
    {
        "type": "text_similarity",
        "name": "close",
        "input": "{{sample.output_text}}",
        "reference": "{{item.expected}}",
        "evaluation_metric": "fuzzy_match",
        "pass_threshold": 0.8,
    },
]
CONFIG = {"type": "custom", "item_schema": ITEM_SCHEMA, "include_sample_schema": True}
TEMPLATE = {
    "type": "template",
    "template": [
        {"role": "developer", "content": "Answer like a pirate."},
        {"role": "user", "content": {"type": "input_text", "text": "{{item.question}}"}},
    ],
}
ITEMS = [
    {"item": {"question": "Greet me", "expected": REPLY}},
    {"item": {"question": "Say bye", "expected": "Farewell"}},
    {"item": {"question": "Greet again", "expected": REPLY}},
]


def completions(**overrides: Any) -> dict[str, Any]:
    return {
        "type": "completions",
        "model": BASE_MODEL,
        "source": {"type": "file_content", "content": ITEMS},
        "input_messages": TEMPLATE,
        "sampling_params": {"temperature": 0.5, "max_completion_tokens": 16, "seed": 7},
        **overrides,
    }


async def finished(client: openai.AsyncOpenAI, eval_id: str, run_id: str, timeout_s: float = 10.0) -> Any:
    """The run once it has left queued/in_progress; fails past ``timeout_s``."""
    async with asyncio.timeout(timeout_s):
        while True:
            run = await client.evals.runs.retrieve(run_id, eval_id=eval_id)
            if run.status not in ("queued", "in_progress"):
                return run
            await asyncio.sleep(0.02)


FAST_SAMPLER = {"gateway_eval_sampler_idle_s": 0.01, "gateway_eval_sampler_max_idle_s": 0.02}


async def test_an_evals_life_through_the_sdk_matches_openais_shapes(gateway: Gateway) -> None:
    client = gateway.sdk()
    created = await client.evals.create(
        name="pirates", data_source_config=CONFIG, testing_criteria=CRITERIA, metadata={"team": "a"}
    )
    body = created.to_dict()
    assert_matches("Eval", body)
    assert body["data_source_config"]["schema"]["properties"]["item"] == ITEM_SCHEMA
    assert "sample" in body["data_source_config"]["schema"]["properties"]
    assert [c["type"] for c in body["testing_criteria"]] == ["string_check", "text_similarity"]
    assert body["testing_criteria"][1]["pass_threshold"] == 0.8

    async with gateway.http() as http:
        assert_matches("getEval", (await http.get(f"/v1/evals/{created.id}")).json())
        assert_matches("listEvals", (await http.get("/v1/evals")).json())
    updated = await client.evals.update(created.id, name="buccaneers", metadata={"team": "b"})
    assert (updated.name, updated.metadata) == ("buccaneers", {"team": "b"})
    assert_matches("updateEval", updated.to_dict())
    cleared = await client.evals.update(created.id, metadata=None)
    assert (cleared.name, cleared.metadata) == ("buccaneers", {})

    deleted = await client.evals.delete(created.id)
    assert (deleted.deleted, deleted.eval_id, deleted.object) == (True, created.id, "eval.deleted")
    assert_matches("deleteEval", deleted.to_dict())
    with pytest.raises(openai.NotFoundError):
        await client.evals.retrieve(created.id)


async def test_a_run_is_sampled_graded_and_counted(gateway_with: GatewayFactory) -> None:
    async with gateway_with(**FAST_SAMPLER) as gateway:
        client = gateway.sdk()
        evaluation = await client.evals.create(data_source_config=CONFIG, testing_criteria=CRITERIA)
        run = await client.evals.runs.create(evaluation.id, name="base", data_source=completions())
        assert run.status in ("queued", "in_progress") and run.result_counts.total == 3
        assert run.report_url.endswith(f"/ui/#/evals/{evaluation.id}/runs/{run.id}")
        assert_matches("EvalRun", run.to_dict())

        done = await finished(client, evaluation.id, run.id)
        assert done.status == "completed"
        counts = done.result_counts
        assert (counts.total, counts.passed, counts.failed, counts.errored) == (3, 2, 1, 0)
        assert done.error is None
        assert_matches("getEvalRun", done.to_dict())

        items = [item async for item in client.evals.runs.output_items.list(run.id, eval_id=evaluation.id)]
        assert sorted(item.datasource_item_id for item in items) == [0, 1, 2]
        for item in items:
            row = ITEMS[item.datasource_item_id]["item"]
            assert item.datasource_item == row
            assert [m.content for m in item.sample.output] == [REPLY]
            assert [(m.role, m.content) for m in item.sample.input] == [
                ("developer", "Answer like a pirate."),
                ("user", row["question"]),
            ]
            assert (item.sample.temperature, item.sample.max_completion_tokens, item.sample.seed) == (0.5, 16, 7)
            assert item.sample.top_p == 1.0 and item.sample.error is None
            assert item.sample.usage.total_tokens == item.sample.usage.prompt_tokens + item.sample.usage.completion_tokens
            assert [r.name for r in item.results] == ["exact", "close"]
            assert item.status == ("pass" if row["expected"] == REPLY else "fail")
        async with gateway.http() as http:
            page = (await http.get(f"/v1/evals/{evaluation.id}/runs/{run.id}/output_items")).json()
            assert_matches("getEvalRunOutputItems", page)
            one = await http.get(f"/v1/evals/{evaluation.id}/runs/{run.id}/output_items/{items[0].id}")
            assert_matches("getEvalRunOutputItem", one.json())
        passed = client.evals.runs.output_items.list(run.id, eval_id=evaluation.id, status="pass")
        assert {item.datasource_item_id async for item in passed} == {0, 2}

        request = gateway.fakes.inference.requests[-1]
        assert (request.sampling.temperature, request.sampling.max_tokens, request.sampling.seed) == (0.5, 16, 7)


async def test_failed_generations_are_item_errors_not_a_stuck_run(gateway_with: GatewayFactory) -> None:
    async with gateway_with(**FAST_SAMPLER) as gateway:
        client = gateway.sdk()
        evaluation = await client.evals.create(data_source_config=CONFIG, testing_criteria=CRITERIA)
        lines = "\n".join(json.dumps(row) for row in ITEMS).encode()
        file = await client.files.create(file=("items.jsonl", lines), purpose="evals")
        gateway.fakes.inference.mode = "fail_first"  # every replica refuses
        run = await client.evals.runs.create(
            evaluation.id, data_source=completions(source={"type": "file_id", "id": file.id})
        )
        assert run.data_source.source.type == "file_id" and run.data_source.source.id == file.id
        done = await finished(client, evaluation.id, run.id)
        assert done.status == "failed" and done.error.code == "all_items_errored"
        assert (done.result_counts.total, done.result_counts.errored) == (3, 3)
        assert_matches("getEvalRun", done.to_dict())
        items = [item async for item in client.evals.runs.output_items.list(run.id, eval_id=evaluation.id)]
        assert {item.status for item in items} == {"error"}
        assert all(item.sample.error.code and item.sample.error.message for item in items)


async def test_a_model_deleted_after_the_run_started_is_an_item_error(gateway_with: GatewayFactory) -> None:
    async with gateway_with(**FAST_SAMPLER, gateway_model_cache_ttl_s=0) as gateway:
        client = gateway.sdk()
        evaluation = await client.evals.create(data_source_config=CONFIG, testing_criteria=CRITERIA)
        gateway.fakes.evals.holding = True
        run = await client.evals.runs.create(evaluation.id, data_source=completions())
        base = gateway.fakes.registry.base
        gateway.fakes.registry.base = [model for model in base if model.id != BASE_MODEL]
        gateway.fakes.evals.holding = False
        done = await finished(client, evaluation.id, run.id)
        assert done.result_counts.errored == 3
        item = (await client.evals.runs.output_items.list(run.id, eval_id=evaluation.id)).data[0]
        assert item.sample.error.code == "model_not_found" and item.sample.output == []


async def test_cancel_by_either_route_and_delete(gateway: Gateway) -> None:
    client = gateway.sdk()
    evaluation = await client.evals.create(data_source_config=CONFIG, testing_criteria=CRITERIA)
    gateway.fakes.evals.holding = True  # the runs stay queued
    runs = [await client.evals.runs.create(evaluation.id, data_source=completions()) for _ in range(2)]
    cancelled = await client.evals.runs.cancel(runs[0].id, eval_id=evaluation.id)
    assert cancelled.status == "canceled"
    async with gateway.http() as http:
        answer = await http.post(f"/v1/evals/{evaluation.id}/runs/{runs[1].id}")
        assert answer.status_code == 200 and answer.json()["status"] == "canceled"
        assert_matches("cancelEvalRun", answer.json())
        again = await http.post(f"/v1/evals/{evaluation.id}/runs/{runs[1].id}/cancel")
        assert again.status_code == 400 and again.json()["error"]["param"] == "run_id"
        assert_matches("getEvalRuns", (await http.get(f"/v1/evals/{evaluation.id}/runs")).json())
    listed = client.evals.runs.list(evaluation.id, status="canceled")
    assert {run.id async for run in listed} == {runs[0].id, runs[1].id}
    assert [run async for run in client.evals.runs.list(evaluation.id, status="completed")] == []

    deleted = await client.evals.runs.delete(runs[0].id, eval_id=evaluation.id)
    assert (deleted.deleted, deleted.run_id) == (True, runs[0].id)
    assert_matches("deleteEvalRun", deleted.to_dict())
    with pytest.raises(openai.NotFoundError):
        await client.evals.runs.retrieve(runs[0].id, eval_id=evaluation.id)


async def test_pages_follow_after_limit_and_order(gateway: Gateway) -> None:
    client = gateway.sdk()
    ids = [(await client.evals.create(name=f"e{n}", data_source_config=CONFIG, testing_criteria=CRITERIA)).id for n in range(5)]
    first = await client.evals.list(limit=2)
    assert [e.id for e in first.data] == ids[:2] and first.has_more
    assert (first.first_id, first.last_id) == (ids[0], ids[1])
    assert [e.id async for e in client.evals.list(limit=2)] == ids  # the SDK follows `after`
    assert [e.id async for e in client.evals.list(limit=2, order="desc")] == ids[::-1]
    last = await client.evals.list(after=ids[3])
    assert [e.id for e in last.data] == [ids[4]] and not last.has_more
    async with gateway.http() as http:
        empty = (await http.get("/v1/evals", params={"after": ids[4]})).json()
        assert empty == {"object": "list", "data": [], "first_id": "", "last_id": "", "has_more": False}
        assert (await http.get("/v1/evals", params={"limit": 0})).json()["error"]["param"] == "limit"
        assert (await http.get("/v1/evals", params={"order": "up"})).json()["error"]["param"] == "order"
        by_update = await http.get("/v1/evals", params={"order_by": "updated_at"})
        assert by_update.status_code == 400 and by_update.json()["error"]["param"] == "order_by"


async def test_another_organizations_eval_is_a_404_everywhere(gateway: Gateway) -> None:
    mine = await gateway.sdk().evals.create(data_source_config=CONFIG, testing_criteria=CRITERIA)
    theirs = gateway.sdk(KEY_B)
    with pytest.raises(openai.NotFoundError):
        await theirs.evals.retrieve(mine.id)
    with pytest.raises(openai.NotFoundError):
        await theirs.evals.runs.create(mine.id, data_source=completions())
    with pytest.raises(openai.NotFoundError):
        await theirs.evals.delete(mine.id)
    assert [e async for e in theirs.evals.list()] == []


async def test_an_unsupported_grader_is_a_bad_request_through_the_sdk(gateway: Gateway) -> None:
    label = {
        "type": "label_model",
        "name": "judge",
        "model": "gpt-4o",
        "input": [{"role": "user", "content": "{{sample.output_text}}"}],
        "labels": ["good", "bad"],
        "passing_labels": ["good"],
    }
    with pytest.raises(openai.BadRequestError) as refused:
        await gateway.sdk().evals.create(data_source_config=CONFIG, testing_criteria=[CRITERIA[0], label])
    error = refused.value.body
    assert error["param"] == "testing_criteria[1].type"
    assert "label_model" in error["message"] and "string_check, text_similarity" in error["message"]


def _eval_body(**overrides: Any) -> dict[str, Any]:
    return {"data_source_config": CONFIG, "testing_criteria": CRITERIA, **overrides}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (_eval_body(data_source_config={"type": "logs", "metadata": {}}), "data_source_config.type"),
        (_eval_body(data_source_config={"type": "stored_completions"}), "data_source_config.type"),
        (_eval_body(data_source_config={"item_schema": ITEM_SCHEMA}), "data_source_config.type"),
        (_eval_body(data_source_config={"type": "custom"}), "data_source_config.item_schema"),
        (_eval_body(testing_criteria=[{**CRITERIA[0], "type": "python", "source": "x"}]), "testing_criteria[0].type"),
        (_eval_body(testing_criteria=[CRITERIA[0], {**CRITERIA[1], "type": "score_model"}]), "testing_criteria[1].type"),
        (_eval_body(testing_criteria=[{**CRITERIA[0], "type": "multi"}]), "testing_criteria[0].type"),
        (_eval_body(testing_criteria=[{**CRITERIA[0], "operation": "regex"}]), "testing_criteria[0].operation"),
        (_eval_body(testing_criteria=[CRITERIA[0], {**CRITERIA[1], "pass_threshold": 2}]), "testing_criteria[1].pass_threshold"),
        (_eval_body(testing_criteria=[{k: v for k, v in CRITERIA[0].items() if k != "name"}]), "testing_criteria[0].name"),
        (_eval_body(testing_criteria=[]), "testing_criteria"),
        (_eval_body(metadata={f"k{n}": "v" for n in range(17)}), "metadata"),
        (_eval_body(metadata={"k" * 65: "v"}), "metadata"),
        (_eval_body(metadata={"k": "v" * 513}), "metadata.k"),
        (_eval_body(colour="red"), "colour"),
    ],
)
async def test_a_bad_eval_is_a_400_naming_the_field(gateway: Gateway, body: dict, param: str) -> None:
    async with gateway.http() as http:
        answer = await http.post("/v1/evals", json=body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["param"].startswith(param), answer.json()
    assert gateway.fakes.evals.evals == {}


@pytest.mark.parametrize(
    ("data_source", "param"),
    [
        ({**completions(), "type": "jsonl"}, "data_source.type"),
        ({**completions(), "type": "responses"}, "data_source.type"),
        (completions(source={"type": "stored_completions"}), "data_source.source.type"),
        (completions(source={"type": "responses"}), "data_source.source.type"),
        (completions(source={"type": "file_content", "content": [{"sample": {}}]}), "data_source.source.content[0].item"),
        (completions(source={"type": "file_id"}), "data_source.source.id"),
        (completions(input_messages={"type": "template", "template": []}), "data_source.input_messages.template"),
        (
            completions(input_messages={"type": "template", "template": [{"role": "tool", "content": "x"}]}),
            "data_source.input_messages.template[0].role",
        ),
        (
            completions(
                input_messages={
                    "type": "template",
                    "template": [{"role": "user", "content": [{"type": "input_image", "image_url": "http://x"}]}],
                }
            ),
            "data_source.input_messages.template[0].content[0]",
        ),
        (completions(input_messages={"type": "trajectory"}), "data_source.input_messages.type"),
        ({k: v for k, v in completions().items() if k != "input_messages"}, "data_source.input_messages"),
        ({k: v for k, v in completions().items() if k != "model"}, "data_source.model"),
        (completions(sampling_params={"temperature": 3}), "data_source.sampling_params.temperature"),
        (completions(sampling_params={"top_p": -1}), "data_source.sampling_params.top_p"),
        (completions(sampling_params={"max_completion_tokens": 2**31}), "data_source.sampling_params.max_completion_tokens"),
        (completions(sampling_params={"seed": 2**63}), "data_source.sampling_params.seed"),
        (
            completions(sampling_params={"response_format": {"type": "json_object"}}),
            "data_source.sampling_params.response_format",
        ),
        (completions(model="no-such-model"), "data_source.model"),
    ],
)
async def test_a_bad_run_is_a_400_naming_the_field(gateway: Gateway, data_source: dict, param: str) -> None:
    evaluation = await gateway.sdk().evals.create(data_source_config=CONFIG, testing_criteria=CRITERIA)
    async with gateway.http() as http:
        answer = await http.post(f"/v1/evals/{evaluation.id}/runs", json={"data_source": data_source})
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["param"] == param, answer.json()
    assert gateway.fakes.evals.runs == {}


async def test_an_item_reference_run_is_accepted_and_echoed(gateway: Gateway) -> None:
    client = gateway.sdk()
    evaluation = await client.evals.create(data_source_config=CONFIG, testing_criteria=CRITERIA)
    reference = {"type": "item_reference", "item_reference": "item.messages"}
    run = await client.evals.runs.create(evaluation.id, data_source=completions(input_messages=reference))
    assert run.data_source.input_messages.type == "item_reference"
    assert run.data_source.input_messages.item_reference == "item.messages"
    assert_matches("EvalRun", run.to_dict())
