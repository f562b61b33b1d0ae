"""The dashboard's Evals pages in a real browser against the real platform.

A script (the openai SDK) fine-tunes tailor-tiny into a pirate, creates an eval with a
string_check and a text_similarity criterion, and runs it against the base model and the
fine-tuned one while the eval's page is open: the page, never reloaded, shows the runs
appear and then side by side (the base model's first) with the scores the API reports, the
fine-tune ahead on "says ahoy";
a run's report_url opens its page with every output item's input, answer and grades. The
browser and the signed-in page are tests/e2e/test_dashboard.py's; the tests run in file order.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from openai.types.evals import RunRetrieveResponse
from playwright.sync_api import expect

from tests.e2e.conftest import Stack
from tests.e2e.jobs import fine_tune
from tests.e2e.test_dashboard import Visit, browser, visit  # noqa: F401 - the shared browser fixtures
from tests.e2e.test_dashboard_webhooks import sign_in
from tests.e2e.test_fine_tuning_flow import BASE_MODEL, EXAMPLES

pytestmark = [
    pytest.mark.slow,
    # openai-python warns on every call that OpenAI plans to retire its own Evals API
    pytest.mark.filterwarnings("ignore:The Evals API is deprecated:DeprecationWarning"),
]

SAILORS = range(6)
SAYS_AHOY = "says ahoy"
CLOSE = "close to the greeting"
RUNS_TIMEOUT_MS = 300_000  # sampling 2 x 6 items on a loaded 2-core CPU
# Few steps (9), a high rate: enough for the greeting's "Ahoy", quick on a loaded machine.
HYPERPARAMETERS = {"n_epochs": 3, "batch_size": 4, "learning_rate_multiplier": 4.0}


@dataclass
class Evaluated:
    """The eval and the fine-tuned model; the runs are started by the first test."""

    eval_id: str
    fine_tuned_model: str
    base_run: str = ""
    tuned_run: str = ""


@pytest.fixture(scope="module")
def evaluated(stack: Stack) -> Iterator[Evaluated]:
    client = stack.client()
    content = "\n".join(json.dumps(example) for example in EXAMPLES).encode()
    training = client.files.create(file=("pirate-evals.jsonl", content), purpose="fine-tune")
    client.files.wait_for_processing(training.id, poll_interval=0.5)
    job = fine_tune(client, BASE_MODEL, training.id, suffix="evals", seed=7, hyperparameters=HYPERPARAMETERS)
    assert job.fine_tuned_model
    created = client.evals.create(
        name="Pirate greetings",
        data_source_config={
            "type": "custom",
            "item_schema": {
                "type": "object",
                "properties": {"sailor": {"type": "integer"}, "greeting": {"type": "string"}},
                "required": ["sailor", "greeting"],
            },
            "include_sample_schema": True,
        },
        testing_criteria=[
            {
                "type": "string_check",
                "name": SAYS_AHOY,
                "input": "{{ sample.output_text }}",
                "reference": "Ahoy",
                "operation": "like",
            },
            {
                "type": "text_similarity",
                "name": CLOSE,
                "input": "{{ sample.output_text }}",
                "reference": "{{ item.greeting }}",
                "evaluation_metric": "fuzzy_match",
                "pass_threshold": 0.8,
            },
        ],
    )
    yield Evaluated(created.id, job.fine_tuned_model)
    client.evals.delete(created.id)


def start_run(stack: Stack, evaluated: Evaluated, model: str, name: str) -> str:
    """Starts a run of the eval on ``model`` as a script would; returns its id."""
    items = [{"item": {"sailor": i, "greeting": f"Ahoy, sailor {i}! Welcome aboard."}} for i in SAILORS]
    return stack.client().evals.runs.create(
        evaluated.eval_id,
        name=name,
        data_source={
            "type": "completions",
            "model": model,
            "source": {"type": "file_content", "content": items},
            "input_messages": {
                "type": "template",
                "template": [
                    {"role": "system", "content": "You are a pirate."},
                    {"role": "user", "content": "Greet sailor number {{ item.sailor }}."},
                ],
            },
            "sampling_params": {"max_completion_tokens": 12, "temperature": 0, "seed": 7},
        },
    ).id


def test_the_eval_page_shows_the_base_and_fine_tuned_runs_scores_side_by_side(
    visit: Visit, evaluated: Evaluated
) -> None:
    page = visit.page
    sign_in(visit, f"/evals/{evaluated.eval_id}")
    expect(page.get_by_role("heading", name="Pirate greetings")).to_be_visible()
    expect(page.get_by_text("No runs yet")).to_be_visible()

    # the runs start while the page is open; it is never reloaded in this test
    evaluated.tuned_run = start_run(visit.stack, evaluated, evaluated.fine_tuned_model, "pirate fine-tune")
    evaluated.base_run = start_run(visit.stack, evaluated, BASE_MODEL, "tailor-tiny as is")
    columns = page.locator("table.scoreboard thead th[data-run]")
    expect(columns).to_have_count(2)
    # base model first (though started last), the fine-tune beside it, each named with its model
    shown = [columns.nth(i).get_attribute("data-run") for i in range(2)]
    assert shown == [evaluated.base_run, evaluated.tuned_run]
    expect(columns.nth(0)).to_contain_text("base model")
    expect(columns.nth(1)).to_contain_text(evaluated.fine_tuned_model)

    # the page refreshes itself until both runs end
    for run_id in (evaluated.base_run, evaluated.tuned_run):
        status = page.locator(f'table.scoreboard tbody td[data-run="{run_id}"] .badge')
        expect(status).to_have_text("completed", timeout=RUNS_TIMEOUT_MS)

    client = visit.stack.client()
    run_ids = (evaluated.base_run, evaluated.tuned_run)
    runs = {run_id: client.evals.runs.retrieve(run_id, eval_id=evaluated.eval_id) for run_id in run_ids}
    for run_id, run in runs.items():
        counts = run.result_counts
        assert counts.total == len(SAILORS) and counts.passed + counts.failed + counts.errored == counts.total
        progress = page.locator(f'table.scoreboard tbody td[data-run="{run_id}"] .progress-text')
        expect(progress).to_have_text(
            f"{counts.passed} passed, {counts.failed} failed, {counts.errored} errored of {counts.total}"
        )
        for name in (SAYS_AHOY, CLOSE):
            passed, graded = criterion_counts(run, name)
            cell = page.locator(f'td.score[data-run="{run_id}"][data-criterion="{name}"]')
            percent = math.floor(100 * passed / graded + 0.5)  # as the page rounds (Math.round)
            expect(cell).to_contain_text(f"{percent}% ({passed} / {graded})")
    # the fine-tune learned the greeting the base model never gives
    assert score_of(runs[evaluated.tuned_run], SAYS_AHOY) > score_of(runs[evaluated.base_run], SAYS_AHOY)
    visit.photo("evals")


def test_a_runs_report_url_opens_its_output_items_with_their_grades(
    visit: Visit, evaluated: Evaluated
) -> None:
    page = visit.page
    client = visit.stack.client()
    run = client.evals.runs.retrieve(evaluated.tuned_run, eval_id=evaluated.eval_id)
    route = f"/evals/{evaluated.eval_id}/runs/{evaluated.tuned_run}"
    assert run.report_url.endswith(f"/ui/#{route}")
    visit.go(run.report_url.split("#", 1)[1])
    expect(page.get_by_role("heading", name=f"Run {run.name}")).to_be_visible()
    rows = page.locator("table.output-items tbody tr")
    expect(rows).to_have_count(len(SAILORS))
    numbers = [rows.nth(i).get_attribute("data-item") for i in range(len(SAILORS))]
    assert numbers == [str(i) for i in SAILORS]  # in the source's order

    listed = client.evals.runs.output_items.list(run.id, eval_id=run.eval_id)
    items = {item.datasource_item_id: item for item in listed}
    first = page.locator('table.output-items tr[data-item="0"]')
    expect(first.locator(".sample-input .role-user .content")).to_have_text("Greet sailor number 0.")
    answer = items[0].sample.output[0].content or ""
    expect(first.locator(".sample-output .role-assistant .content")).to_have_text(answer)
    for grade in items[0].results:
        shown = first.locator(f'li[data-grade="{grade.name}"]')
        expect(shown.locator(".badge")).to_have_text("pass" if grade.passed else "fail")
        expect(shown).to_contain_text(f"score {grade.score:.3g}")
    visit.photo("eval-run", full_page=True)

    # only the items that failed, as the API counts them
    page.get_by_label("Show", exact=True).select_option("fail")
    failed = sum(1 for item in items.values() if item.status == "fail")
    expect(rows).to_have_count(failed)
    if not failed:
        expect(page.get_by_text("No items of this kind.")).to_be_visible()


def test_the_evals_list_links_to_the_eval(visit: Visit, evaluated: Evaluated) -> None:
    page = visit.page
    visit.go("/evals")
    row = page.locator(f'tr[data-eval="{evaluated.eval_id}"]')
    expect(row).to_contain_text(SAYS_AHOY)
    expect(row).to_contain_text("text_similarity, passes at 0.8")
    row.get_by_role("link", name="Pirate greetings").click()
    expect(page.locator("table.scoreboard thead th[data-run]")).to_have_count(2)


def criterion_counts(run: RunRetrieveResponse, name: str) -> tuple[int, int]:
    """Passed and graded (passed + failed) items of one criterion, as the API reports them."""
    result = next(r for r in run.per_testing_criteria_results if r.testing_criteria == name)
    return result.passed, result.passed + result.failed


def score_of(run: RunRetrieveResponse, name: str) -> float:
    passed, graded = criterion_counts(run, name)
    return passed / graded
