"""Tailor's webhook signatures are what the openai SDK verifies, and a wrong secret or body is refused.

Also the pure rules around them: which URLs may receive webhooks, and the retry delays.
"""

from __future__ import annotations

import time

import openai
import pytest

from services.common.errors import InvalidArgument
from services.trainer.webhooks.delivery import retry_delay
from services.trainer.webhooks.events import JOB_SUCCEEDED, payload
from services.trainer.webhooks.signing import new_secret, secret_hint, signed_headers
from services.trainer.webhooks.targets import check_url, target_allowed

CLIENT = openai.OpenAI(api_key="unused", base_url="http://127.0.0.1:9/v1")


def test_the_sdk_unwraps_a_signed_event() -> None:
    secret = new_secret()
    body = payload("evt_abc", JOB_SUCCEEDED, 1_700_000_000, "ftjob-xyz")
    headers = signed_headers(secret, "evt_abc", int(time.time()), body)

    event = CLIENT.webhooks.unwrap(body, headers, secret=secret)

    assert event.type == JOB_SUCCEEDED
    assert event.id == "evt_abc" and event.object == "event" and event.created_at == 1_700_000_000
    assert event.data.id == "ftjob-xyz"


def test_another_secret_or_a_changed_body_is_refused() -> None:
    secret = new_secret()
    body = payload("evt_abc", JOB_SUCCEEDED, 1_700_000_000, "ftjob-xyz")
    headers = signed_headers(secret, "evt_abc", int(time.time()), body)

    with pytest.raises(openai.InvalidWebhookSignatureError):
        CLIENT.webhooks.verify_signature(body, headers, secret=new_secret())
    with pytest.raises(openai.InvalidWebhookSignatureError):
        CLIENT.webhooks.verify_signature(body.replace(b"xyz", b"xyw"), headers, secret=secret)


def test_a_secret_is_shown_afterwards_only_as_a_hint() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_") and len(secret) > 40
    assert secret_hint(secret) == f"whsec_...{secret[-4:]}"


@pytest.mark.parametrize(
    ("url", "allowed", "problem"),
    [
        ("ftp://example.com/hook", [], "http:// or https://"),
        ("https:///nohost", [], "http:// or https://"),
        ("https://user:pw@example.com/", [], "credentials"),
        ("https://10.0.0.5/hook", ["hooks.example.com", "203.0.113.0/24"], "10.0.0.5 is not among"),
        ("https://other.example.com/", ["hooks.example.com"], "other.example.com is not among"),
    ],
)
def test_urls_that_may_not_receive_webhooks_are_named(url: str, allowed: list[str], problem: str) -> None:
    with pytest.raises(InvalidArgument, match=problem) as refused:
        check_url(url, allowed)
    assert refused.value.param == "url"


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("http://127.0.0.1:8080/hook", []),
        ("https://hooks.example.com/a", ["hooks.example.com"]),
        ("https://203.0.113.7/a", ["203.0.113.0/24"]),
    ],
)
def test_allowed_urls_pass(url: str, allowed: list[str]) -> None:
    assert check_url(url, allowed) == url


@pytest.mark.parametrize(
    ("attempts", "low", "high"),
    [(1, 2.5, 5.0), (2, 5.0, 10.0), (5, 40.0, 80.0), (8, 300.0, 600.0), (10_000, 300.0, 600.0)],
)
def test_retries_double_from_the_first_delay_up_to_the_cap_with_jitter(
    attempts: int, low: float, high: float
) -> None:
    delays = [retry_delay(attempts, 5.0, 600.0) for _ in range(200)]
    assert all(low <= delay <= high for delay in delays)
    assert max(delays) - min(delays) > 0  # jittered, not one fixed value


@pytest.mark.parametrize(
    ("url", "allowed", "expected"),
    [
        ("http://localhost:1/hook", [], True),
        ("http://localhost:1/hook", ["127.0.0.0/8", "::1/128"], True),
        ("http://localhost:1/hook", ["10.0.0.0/8"], False),
        ("http://localhost:1/hook", ["localhost"], True),
        ("http://no-such-host.invalid/hook", ["10.0.0.0/8"], False),
    ],
)
async def test_before_each_attempt_the_resolved_addresses_must_be_allowed(
    url: str, allowed: list[str], expected: bool
) -> None:
    assert await target_allowed(url, allowed) is expected
