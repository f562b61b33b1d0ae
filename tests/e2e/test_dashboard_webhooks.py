"""The dashboard's Webhooks pages in a real browser against the real platform.

A user adds an endpoint through the page and sees its signing secret once, copies it, and a
reload shows the endpoint without it; the secret the page showed verifies the event a
cancelled job delivers, whose attempt the endpoint's page lists; a rotation shows a new secret
once; the endpoint is deleted from its page. The browser and the signed-in page are
tests/e2e/test_dashboard.py's; the tests run in file order, as one user's visit.
"""

from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import KEY_A
from tests.e2e.test_dashboard import Visit, browser, visit  # noqa: F401 - the shared browser fixtures
from tests.e2e.test_fine_tuning_flow import BASE_MODEL, EXAMPLES
from tests.e2e.test_webhooks import Receiver, receiver  # noqa: F401 - the loopback receiver fixture

pytestmark = pytest.mark.slow

NAME = "Build notifier"
RENAMED = "Renamed notifier"
EVENT = "fine_tuning.job.cancelled"
FIRST_TYPE = "fine_tuning.job.succeeded"  # the first checkbox


def sign_in(visit: Visit, route: str) -> None:
    """Opens ``route`` as a shared link: the sign-in page comes first, then the route itself."""
    page = visit.page
    visit.go(route)
    page.get_by_label("API key").fill(KEY_A)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_label("API key")).to_have_count(0)


def test_an_endpoint_is_created_and_its_secret_shown_once_then_verifies_a_delivery(
    visit: Visit, receiver: Receiver
) -> None:
    page = visit.page
    sign_in(visit, "/webhooks")
    expect(page.get_by_role("heading", name="Webhooks", exact=True)).to_be_visible()
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=visit.stack.url)
    page.get_by_label("Name", exact=True).fill(NAME)
    page.get_by_label("URL", exact=True).fill(f"{receiver.url}/hooks")

    # no event type chosen: the page says what is missing and sends nothing
    page.get_by_role("button", name="Create endpoint").click()
    expect(page.get_by_text("Choose at least one event type.")).to_be_visible()
    assert NAME not in [endpoint.name for endpoint in visit.stack.client().webhooks.list()]

    page.get_by_label(EVENT).check()
    page.get_by_role("button", name="Create endpoint").click()
    shown = page.get_by_role("status").filter(has_text="you will not see this again")
    expect(shown).to_contain_text(f"Endpoint {NAME} created")
    secret = page.get_by_label("Signing secret").input_value()
    assert secret.startswith("whsec_")
    page.get_by_role("button", name="Copy secret").click()
    expect(shown).to_contain_text("Copied.")
    assert page.evaluate("navigator.clipboard.readText()") == secret

    endpoint = next(endpoint for endpoint in visit.stack.client().webhooks.list() if endpoint.name == NAME)
    row = page.locator(f'tr[data-endpoint="{endpoint.id}"]')
    expect(row).to_contain_text(NAME)
    expect(row).to_contain_text(EVENT)
    expect(row.locator(".secret-hint")).to_have_text(endpoint.signing_secret_hint)
    visit.photo("webhooks")

    page.reload()
    expect(row).to_contain_text(NAME)
    expect(page.get_by_label("Signing secret")).to_have_count(0)
    assert secret not in page.content()

    # the secret the page showed is the one deliveries are signed with
    client = visit.stack.client()
    content = "\n".join(json.dumps(example) for example in EXAMPLES).encode()
    training = client.files.create(file=("hooked.jsonl", content), purpose="fine-tune")
    client.files.wait_for_processing(training.id, poll_interval=0.5)
    job = client.fine_tuning.jobs.create(model=BASE_MODEL, training_file=training.id)
    client.fine_tuning.jobs.cancel(job.id)
    headers, body = receiver.wait_for("/hooks")
    event = client.webhooks.unwrap(body, headers, secret=secret)
    assert (event.type, event.data.id) == (EVENT, job.id)

    row.get_by_role("link", name=NAME).click()
    expect(page.get_by_role("heading", name=NAME, exact=True)).to_be_visible()
    attempt = page.locator("table.attempts tbody tr").first
    expect(attempt).to_contain_text(event.id)
    expect(attempt.locator(".badge")).to_have_text("delivered")
    expect(attempt).to_contain_text("200")
    expect(page.locator(".facts")).to_contain_text("1 delivered, 0 pending, 0 failed")
    visit.photo("webhook", full_page=True)


def test_an_endpoint_is_edited_its_secret_rotated_and_it_is_deleted_from_its_page(visit: Visit) -> None:
    page = visit.page
    client = visit.stack.client()
    endpoint = next(endpoint for endpoint in client.webhooks.list() if endpoint.name == NAME)
    visit.go(f"/webhooks/{endpoint.id}")
    expect(page.get_by_role("heading", name=NAME, exact=True)).to_be_visible()

    page.get_by_label("Name", exact=True).fill(RENAMED)
    page.get_by_label("fine_tuning.job.failed").check()
    page.get_by_role("button", name="Save changes").click()
    expect(page.locator(".notice")).to_contain_text(f"Saved {RENAMED}.")
    expect(page.get_by_role("heading", name=RENAMED, exact=True)).to_be_visible()
    assert sorted(client.webhooks.retrieve(endpoint.id).event_types) == [EVENT, "fine_tuning.job.failed"]

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Rotate secret").click()
    shown = page.get_by_role("status").filter(has_text="you will not see this again")
    expect(shown).to_contain_text(f"Secret of {RENAMED} rotated")
    assert page.get_by_label("Signing secret").input_value().startswith("whsec_")
    hint = client.webhooks.retrieve(endpoint.id).signing_secret_hint
    assert hint != endpoint.signing_secret_hint
    expect(page.locator(".facts")).to_contain_text(hint)
    page.get_by_role("button", name="I have stored it").click()
    expect(page.get_by_label("Signing secret")).to_have_count(0)

    page.once("dialog", lambda dialog: dialog.dismiss())  # "no": nothing happens
    page.get_by_role("button", name="Delete").click()
    expect(page.get_by_role("heading", name=RENAMED, exact=True)).to_be_visible()
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete").click()
    expect(page).to_have_url(re.compile(r"#/webhooks$"))
    expect(page.get_by_role("heading", name="Endpoints", exact=True)).to_be_visible()
    expect(page.locator(f'tr[data-endpoint="{endpoint.id}"]')).to_have_count(0)
    assert endpoint.id not in [listed.id for listed in client.webhooks.list()]


def test_the_webhooks_page_is_reached_and_filled_with_the_keyboard(visit: Visit) -> None:
    page = visit.page
    visit.go("/jobs")
    page.get_by_role("link", name="Webhooks", exact=True).focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Webhooks", exact=True)).to_be_visible()
    assert page.evaluate("document.activeElement.id") == "main"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "new-name"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "new-url"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == f"new-type-{FIRST_TYPE}"
    page.keyboard.press("Space")
    expect(page.get_by_label(FIRST_TYPE)).to_be_checked()

