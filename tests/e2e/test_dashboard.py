"""The dashboard in a real browser (Debian's Chromium, headless, driven by Playwright) against
the real platform: sign in, see a bad upload's line, watch a job's loss chart grow, pause and
resume it from its page, and compare the base and fine-tuned models' answers side by side.

The tests share one signed-in page and run in file order, as one user's visit. Each page is
photographed; set TAILOR_DASHBOARD_SCREENSHOTS=docs/images to refresh the README's pictures
(by default they go to a temporary folder). No browser is downloaded: Chromium is the one
requirements/system.sh installs.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.e2e.conftest import KEY_A, Stack
from tests.e2e.test_fine_tuning_flow import BASE_MODEL, EXAMPLES, TRAINING_TIMEOUT_S

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
WAIT_MS = 60_000
# Long enough to be caught running (the page polls every 2 s) and paused before it ends: 48
# examples, one per step, 4 epochs (192 steps: about 10 s on an idle 2-core CPU, minutes on a
# loaded one). At 2 epochs an idle machine had nearly finished the job when the page first
# drew its metrics, and it succeeded before the pause reached its worker. The trainer
# reports metrics every 5 steps.
JOB_EXAMPLES = EXAMPLES * 4
JOB_HYPERPARAMETERS = {"n_epochs": 4, "batch_size": 1}
BAD_LINE = 3


@dataclass
class Visit:
    """The signed-in page, the platform behind it, and where photos go."""

    page: Page
    stack: Stack
    photos: Path

    paused_points: int = 0

    def photo(self, name: str, *, full_page: bool = False) -> None:
        self.page.screenshot(path=self.photos / f"dashboard-{name}.png", full_page=full_page)

    def go(self, route: str) -> None:
        self.page.goto(f"{self.stack.url}/ui/#{route}")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def visit(stack: Stack, browser: Browser, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Visit]:
    photos = Path(os.environ.get("TAILOR_DASHBOARD_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    photos.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(WAIT_MS)
    expect.set_options(timeout=WAIT_MS)
    page = context.new_page()
    try:
        yield Visit(page=page, stack=stack, photos=photos)
    finally:
        context.close()


@pytest.fixture(scope="module")
def job_id(stack: Stack) -> str:
    """A job started through the SDK, as a script would; the dashboard only watches it."""
    client = stack.client()
    content = "\n".join(json.dumps(example) for example in JOB_EXAMPLES).encode()
    training = client.files.create(file=("pirate-long.jsonl", content), purpose="fine-tune")
    validation_content = "\n".join(json.dumps(example) for example in EXAMPLES).encode()
    validation = client.files.create(file=("pirate-valid.jsonl", validation_content), purpose="fine-tune")
    for file in (training, validation):
        client.files.wait_for_processing(file.id, poll_interval=0.5)
    return client.fine_tuning.jobs.create(
        model=BASE_MODEL,
        training_file=training.id,
        validation_file=validation.id,
        suffix="dash",
        seed=7,
        hyperparameters=JOB_HYPERPARAMETERS,
    ).id


def test_sign_in_refuses_a_wrong_key_and_keeps_the_right_one_for_the_tab(visit: Visit) -> None:
    page = visit.page
    page.goto(visit.stack.url)  # / redirects to the dashboard
    assert page.url == f"{visit.stack.url}/ui/"
    page.get_by_label("API key").fill("sk-wrong")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("API key")
    page.get_by_label("API key").fill(KEY_A)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Fine-tuning jobs")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('tailor.apiKey')") == KEY_A
    page.reload()
    expect(page.get_by_role("heading", name="Fine-tuning jobs")).to_be_visible()


def test_an_upload_with_a_bad_line_shows_that_line(visit: Visit) -> None:
    page = visit.page
    lines = [json.dumps(example) for example in EXAMPLES[:6]]
    lines[BAD_LINE - 1] = '{"messages": [{"role": "user"'
    visit.go("/files")
    page.get_by_label("JSONL file").set_input_files(
        {"name": "broken.jsonl", "mimeType": "application/jsonl", "buffer": "\n".join(lines).encode()}
    )
    page.get_by_role("button", name="Upload").click()
    notice = page.locator(".notice")
    expect(notice).to_contain_text("Uploaded broken.jsonl")
    row = page.locator(f'tr[data-file="{notice.get_by_role("link").inner_text()}"]')
    expect(row.locator(".badge")).to_have_text("error")
    expect(row.locator(".problems")).to_contain_text(f"line {BAD_LINE}")
    visit.photo("files")

    row.get_by_role("link", name="broken.jsonl").click()
    expect(page.get_by_role("alert")).to_contain_text(f"line {BAD_LINE}")
    problem = page.locator(f'li.example[data-line="{BAD_LINE}"]')
    expect(problem).to_have_class(re.compile("problem"))
    expect(problem).to_contain_text('{"messages": [{"role": "user"')
    # the readable lines are rendered as conversations
    first = page.locator('li.example[data-line="1"]')
    expect(first.locator(".role-assistant")).to_contain_text("Ahoy, sailor 0!")
    visit.photo("file")


def test_a_running_job_is_paused_from_its_page(visit: Visit, job_id: str) -> None:
    page = visit.page
    visit.go(f"/jobs/{job_id}")
    chart = page.locator("figure.chart")
    expect(chart).not_to_have_attribute("data-points", "0")  # running: its first metrics are drawn
    page.get_by_role("button", name="Pause").click()
    expect(page.locator(".job-header .badge")).to_have_text("paused")
    expect(page.get_by_role("button", name="Pause")).to_be_disabled()
    expect(page.locator(".events")).to_contain_text("Fine-tuning job paused")
    assert page.locator("canvas").count() >= 1
    visit.paused_points = int(chart.get_attribute("data-points") or 0)


def test_the_jobs_list_shows_the_paused_jobs_progress(visit: Visit, job_id: str) -> None:
    page = visit.page
    visit.go("/jobs")
    row = page.locator(f'tr[data-job="{job_id}"]')
    expect(row.locator(".badge")).to_have_text("paused")
    expect(row.locator(".progress-text")).to_contain_text(re.compile(r"step \d+ / \d+ · epoch"))
    visit.photo("jobs")


def test_a_resumed_jobs_chart_gains_points_until_it_succeeds(visit: Visit, job_id: str) -> None:
    page = visit.page
    row = page.locator(f'tr[data-job="{job_id}"]')
    row.get_by_role("link", name=job_id).click()
    status = page.locator(".job-header .badge")
    expect(status).to_have_text("paused")
    page.get_by_role("button", name="Resume").click()
    expect(status).not_to_have_text("paused")
    expect(page.locator(".events")).to_contain_text("Fine-tuning job resumed")
    client = visit.stack.client()
    deadline = time.monotonic() + TRAINING_TIMEOUT_S
    while client.fine_tuning.jobs.retrieve(job_id).status not in ("succeeded", "failed", "cancelled"):
        assert time.monotonic() < deadline, "the resumed job never finished"
        time.sleep(1)
    expect(status).to_have_text("succeeded")
    # the page was never reloaded: its polling drew the points of the rest of the run
    points = int(page.locator("figure.chart").get_attribute("data-points") or 0)
    assert points > visit.paused_points
    expect(page.locator(".chart-summary")).to_contain_text(f"{points} steps plotted")
    expect(page.get_by_role("button", name=re.compile("^Download file-"))).to_be_visible()
    expect(page.locator("section", has_text="Checkpoints").locator("tbody tr").first).to_be_visible()
    expect(page.locator("section", has_text="Hyperparameters")).to_contain_text("n_epochs")
    visit.photo("job", full_page=True)


def test_the_playground_compares_base_fine_tuned_and_checkpoint_answers(visit: Visit, job_id: str) -> None:
    page = visit.page
    client = visit.stack.client()
    fine_tuned = client.fine_tuning.jobs.retrieve(job_id).fine_tuned_model
    assert fine_tuned
    checkpoint = client.fine_tuning.jobs.checkpoints.list(job_id).data[-1].fine_tuned_model_checkpoint
    visit.go(f"/playground?models={BASE_MODEL}")
    for number, model in ((2, fine_tuned), (3, checkpoint)):
        page.get_by_role("button", name="Add a model to compare").click()
        page.get_by_label(f"Model {number}", exact=True).select_option(model)
    expect(page.get_by_role("button", name="Add a model to compare")).to_be_disabled()  # three at most
    page.get_by_label("System message").fill("You are a pirate.")
    page.get_by_label("Max tokens").fill("12")
    page.get_by_label("Message", exact=True).fill("Greet sailor number 3.")
    page.get_by_role("button", name="Send").click()
    columns = page.locator("section.column")
    expect(columns).to_have_count(3)
    for index in range(3):
        column = columns.nth(index)
        expect(column).to_have_attribute("data-state", "done")
        expect(column.locator(".role-user")).to_contain_text("Greet sailor number 3.")
        expect(column.locator(".role-assistant .finish")).to_contain_text("finish:")
    # the fine-tuned model learned the pirate's greeting
    expect(columns.nth(1).locator(".role-assistant .content")).to_contain_text("Ahoy")
    # the comparison is in the URL, so it can be shared
    assert f"models={BASE_MODEL},{fine_tuned.replace(':', '%3A')}" in page.url
    visit.photo("playground")


def test_the_models_page_lists_the_fine_tune_with_its_job_and_deletes_a_checkpoint(
    visit: Visit, job_id: str
) -> None:
    page = visit.page
    client = visit.stack.client()
    fine_tuned = client.fine_tuning.jobs.retrieve(job_id).fine_tuned_model
    checkpoint = client.fine_tuning.jobs.checkpoints.list(job_id).data[-1].fine_tuned_model_checkpoint
    visit.go("/models")
    expect(page.locator(f'tr[data-model="{fine_tuned}"]')).to_contain_text(job_id)
    expect(page.locator(f'tr[data-model="{BASE_MODEL}"]')).to_contain_text("base")
    visit.photo("models")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name=f"Delete {checkpoint}").click()
    expect(page.locator(".notice")).to_contain_text(f"Deleted {checkpoint}")
    expect(page.locator(f'tr[data-model="{checkpoint}"]')).to_have_count(0)
    assert checkpoint not in [model.id for model in client.models.list()]


def test_a_job_is_cancelled_from_its_page_after_confirming(visit: Visit) -> None:
    page = visit.page
    client = visit.stack.client()
    content = "\n".join(json.dumps(example) for example in EXAMPLES).encode()
    training = client.files.create(file=("cancel-me.jsonl", content), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model=BASE_MODEL, training_file=training.id, suffix="cancel")
    visit.go(f"/jobs/{job.id}")
    page.once("dialog", lambda dialog: dialog.dismiss())  # "no": nothing happens
    page.get_by_role("button", name="Cancel").click()
    expect(page.get_by_role("button", name="Cancel")).to_be_enabled()
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Cancel").click()
    expect(page.locator(".job-header .badge")).to_have_text("cancelled")
    assert client.fine_tuning.jobs.retrieve(job.id).status == "cancelled"


def test_the_pages_are_reached_with_the_keyboard(visit: Visit) -> None:
    page = visit.page
    visit.go("/jobs")
    expect(page.get_by_role("heading", name="Fine-tuning jobs")).to_be_visible()
    page.get_by_role("link", name="Jobs").focus()
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Files")).to_be_visible()
    assert page.url.endswith("#/files")
    # the new page's content has the focus, so the next Tab walks its controls
    assert page.evaluate("document.activeElement.id") == "main"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "upload-file"


def test_signing_out_forgets_the_key(visit: Visit) -> None:
    page = visit.page
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("API key")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('tailor.apiKey')") is None
    visit.go("/jobs")  # a shared link asks for a key first
    expect(page.get_by_label("API key")).to_be_visible()
