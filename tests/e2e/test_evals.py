"""Evals on the real platform through the official SDK: the base model and a fine-tune, graded, cancelled, deleted.

One eval (a ``string_check`` and a ``text_similarity`` criterion) is run on an uploaded
evals file against ``tailor-tiny`` and against a model fine-tuned for the module to answer
like a pirate; the gateway's sampler answers every item through inference and the
trainer grades each answer. The tests look at the results the way a user's script would.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import openai
import pytest

from tests.e2e.conftest import KEY_B, Stack
from tests.e2e.jobs import fine_tune
from tests.e2e.test_webhooks import Receiver, receiver  # noqa: F401 - the receiver fixture

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:The Evals API is deprecated:DeprecationWarning"),
]

BASE_MODEL = "tailor-tiny"
# A tiny model on a busy 2-core machine answers a few short items in seconds; generous.
RUN_TIMEOUT_S = 300
GREETING = "Ahoy, sailor! Welcome aboard."
TRAINING = [
    {
        "messages": [
            {"role": "system", "content": "You are a pirate."},
            {"role": "user", "content": f"Greet sailor number {i}."},
            {"role": "assistant", "content": GREETING},
        ]
    }
    for i in range(12)
]
ITEMS = [{"item": {"sailor": str(i), "expected": GREETING}} for i in range(4)]
CRITERIA: list[dict[str, Any]] = [
    {
        "type": "string_check",
        "name": "says ahoy",
        "input": "{{ sample.output_text }}",
        "reference": "Ahoy",
        "operation": "ilike",
    },
    {
        "type": "text_similarity",
        "name": "close to the greeting",
        "input": "{{ sample.output_text }}",
        "reference": "{{ item.expected }}",
        "evaluation_metric": "fuzzy_match",
        "pass_threshold": 0.6,
    },
]
TEMPLATE = {
    "type": "template",
    "template": [
        {"role": "system", "content": "You are a pirate."},
        {"role": "user", "content": {"type": "input_text", "text": "Greet sailor number {{ item.sailor }}."}},
    ],
}
SAMPLING = {"max_completion_tokens": 12, "temperature": 0.0, "seed": 7}


@dataclass
class Prepared:
    eval_id: str
    file_id: str
    fine_tuned_model: str


@pytest.fixture(scope="module")
def prepared(stack: Stack) -> Iterator[Prepared]:
    client = stack.client()
    training = "\n".join(json.dumps(example) for example in TRAINING).encode()
    uploaded = client.files.create(file=("pirate.jsonl", training), purpose="fine-tune")
    job = fine_tune(
        client,
        BASE_MODEL,
        uploaded.id,
        suffix="evals",
        seed=1234,
        hyperparameters={"n_epochs": 3, "batch_size": 4, "learning_rate_multiplier": 4.0},
    )
    items = "\n".join(json.dumps(row) for row in ITEMS).encode()
    evals_file = client.files.create(file=("sailors.jsonl", items), purpose="evals")
    evaluation = client.evals.create(
        name="pirate greetings",
        data_source_config={
            "type": "custom",
            "item_schema": {
                "type": "object",
                "properties": {"sailor": {"type": "string"}, "expected": {"type": "string"}},
                "required": ["sailor", "expected"],
            },
            "include_sample_schema": True,
        },
        testing_criteria=CRITERIA,
        metadata={"suite": "e2e"},
    )
    yield Prepared(evaluation.id, evals_file.id, job.fine_tuned_model or "")


def run_on(client: openai.OpenAI, prepared: Prepared, model: str, **source: Any) -> Any:
    return client.evals.runs.create(
        prepared.eval_id,
        name=f"on {model}",
        data_source={
            "type": "completions",
            "model": model,
            "source": source or {"type": "file_id", "id": prepared.file_id},
            "input_messages": TEMPLATE,
            "sampling_params": SAMPLING,
        },
    )


def wait_until_finished(client: openai.OpenAI, eval_id: str, run_id: str) -> Any:
    """The run once it has ended; fails the test when it has not within :data:`RUN_TIMEOUT_S`."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while True:
        run = client.evals.runs.retrieve(run_id, eval_id=eval_id)
        if run.status not in ("queued", "in_progress"):
            return run
        assert time.monotonic() < deadline, f"run {run_id} still {run.status} after {RUN_TIMEOUT_S}s"
        time.sleep(1)


@pytest.mark.parametrize("which", ["base", "fine-tuned"])
def test_a_run_samples_and_grades_every_item(stack: Stack, prepared: Prepared, which: str) -> None:
    client = stack.client()
    model = BASE_MODEL if which == "base" else prepared.fine_tuned_model
    run = wait_until_finished(client, prepared.eval_id, run_on(client, prepared, model).id)
    assert run.status == "completed", run.error
    counts = run.result_counts
    assert counts.total == len(ITEMS)
    assert counts.passed + counts.failed + counts.errored == counts.total and counts.errored == 0
    assert {r.testing_criteria for r in run.per_testing_criteria_results} == {c["name"] for c in CRITERIA}
    for result in run.per_testing_criteria_results:
        assert result.passed + result.failed == counts.total
    assert run.report_url.endswith(f"/ui/#/evals/{prepared.eval_id}/runs/{run.id}")

    items = list(client.evals.runs.output_items.list(run.id, eval_id=prepared.eval_id))
    assert sorted(item.datasource_item_id for item in items) == list(range(len(ITEMS)))
    for item in items:
        assert item.datasource_item == ITEMS[item.datasource_item_id]["item"]
        sample = item.sample
        assert sample.error is None and sample.model == model
        assert [m.role for m in sample.input] == ["system", "user"]
        assert sample.input[1].content == f"Greet sailor number {item.datasource_item_id}."
        assert len(sample.output) == 1 and sample.output[0].role == "assistant"
        assert sample.usage.completion_tokens >= 1 and sample.max_completion_tokens == 12
        assert [r.name for r in item.results] == [c["name"] for c in CRITERIA]
        assert item.status == ("pass" if all(r.passed for r in item.results) else "fail")
    passed = sum(item.status == "pass" for item in items)
    assert passed == counts.passed
    if which == "fine-tuned":  # trained to answer exactly this: it should, at temperature 0
        assert counts.passed >= 1, [item.sample.output[0].content for item in items]
    one = client.evals.runs.output_items.retrieve(items[0].id, eval_id=prepared.eval_id, run_id=run.id)
    assert one.id == items[0].id
    assert one.sample.output[0].content == items[0].sample.output[0].content


def test_cancel_stops_a_run_and_delete_removes_it(stack: Stack, prepared: Prepared) -> None:
    client = stack.client()
    many = {"type": "file_content", "content": ITEMS * 16}
    run = run_on(client, prepared, BASE_MODEL, **many)
    cancelled = client.evals.runs.cancel(run.id, eval_id=prepared.eval_id)
    assert cancelled.status == "canceled"
    with pytest.raises(openai.BadRequestError):
        client.evals.runs.cancel(run.id, eval_id=prepared.eval_id)
    assert run.id in [r.id for r in client.evals.runs.list(prepared.eval_id, status="canceled")]
    # what the sampler had claimed meanwhile is dropped when recorded, not graded
    settled = client.evals.runs.retrieve(run.id, eval_id=prepared.eval_id)
    assert settled.status == "canceled"
    counts = settled.result_counts
    assert counts.passed + counts.failed + counts.errored < counts.total == len(ITEMS) * 16

    deleted = client.evals.runs.delete(run.id, eval_id=prepared.eval_id)
    assert deleted.deleted and deleted.run_id == run.id
    with pytest.raises(openai.NotFoundError):
        client.evals.runs.retrieve(run.id, eval_id=prepared.eval_id)


def test_unsupported_graders_and_data_sources_are_bad_requests(stack: Stack, prepared: Prepared) -> None:
    client = stack.client()
    label_model = {
        "type": "label_model",
        "name": "judge",
        "model": BASE_MODEL,
        "input": [{"role": "user", "content": "{{ sample.output_text }}"}],
        "labels": ["good", "bad"],
        "passing_labels": ["good"],
    }
    with pytest.raises(openai.BadRequestError) as refused:
        client.evals.create(
            data_source_config={"type": "custom", "item_schema": {"type": "object"}},
            testing_criteria=[label_model],
        )
    assert refused.value.param == "testing_criteria[0].type"
    with pytest.raises(openai.BadRequestError) as refused:
        client.evals.create(data_source_config={"type": "logs"}, testing_criteria=CRITERIA)
    assert refused.value.param == "data_source_config.type"
    with pytest.raises(openai.BadRequestError) as refused:
        client.evals.runs.create(
            prepared.eval_id,
            data_source={"type": "jsonl", "source": {"type": "file_id", "id": prepared.file_id}},
        )
    assert refused.value.param == "data_source.type"


def test_an_eval_is_its_organizations_and_goes_with_its_runs(stack: Stack, prepared: Prepared) -> None:
    client, other = stack.client(), stack.client(KEY_B)
    with pytest.raises(openai.NotFoundError):
        other.evals.retrieve(prepared.eval_id)
    assert prepared.eval_id not in [e.id for e in other.evals.list()]
    assert prepared.eval_id in [e.id for e in client.evals.list()]
    updated = client.evals.update(prepared.eval_id, name="renamed")
    assert updated.name == "renamed" and updated.metadata == {"suite": "e2e"}

    doomed = client.evals.create(
        data_source_config={"type": "custom", "item_schema": {"type": "object"}, "include_sample_schema": True},
        testing_criteria=CRITERIA[:1],
    )
    run = client.evals.runs.create(
        doomed.id,
        data_source={
            "type": "completions",
            "model": BASE_MODEL,
            "source": {"type": "file_content", "content": [{"item": {}}]},
            "input_messages": {"type": "template", "template": [{"role": "user", "content": "Hi"}]},
            "sampling_params": {"max_completion_tokens": 1},
        },
    )
    deleted = client.evals.delete(doomed.id)
    assert deleted.deleted and deleted.eval_id == doomed.id
    with pytest.raises(openai.NotFoundError):
        client.evals.runs.retrieve(run.id, eval_id=doomed.id)


def test_a_finished_run_sends_eval_run_succeeded_which_the_sdk_verifies(
    stack: Stack, prepared: Prepared, receiver: Receiver
) -> None:
    client = stack.client()
    endpoint = client.webhooks.create(name="evals", url=receiver.url + "/evals", event_types=["eval.run.succeeded"])
    try:
        inline = {"type": "file_content", "content": ITEMS[:1]}
        run = wait_until_finished(client, prepared.eval_id, run_on(client, prepared, BASE_MODEL, **inline).id)
        assert run.status == "completed", run.error

        # The organization's other runs (earlier tests on the shared stack) may end meanwhile and
        # send theirs too: every event must verify, and this run's must be among them.
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while True:
            received = [(h, b) for path, h, b in receiver.received if path == "/evals"]
            events = [client.webhooks.unwrap(b, h, secret=endpoint.signing_secret) for h, b in received]
            if any(event.data.id == run.id for event in events):
                break
            assert time.monotonic() < deadline, f"no eval.run.succeeded for {run.id}: {events}"
            time.sleep(0.2)
        assert {event.type for event in events} == {"eval.run.succeeded"}
    finally:
        client.webhooks.delete(endpoint.id)
