"""/v1/webhook_endpoints through the SDK's client.webhooks.

The secret is answered once, a bad field is a 400 naming it, another organization's endpoint a 404.
"""

from __future__ import annotations

import openai
import pytest

from tests.unit.gateway.conftest import KEY_B, Gateway

JOB_EVENTS = ["fine_tuning.job.succeeded", "fine_tuning.job.failed", "fine_tuning.job.cancelled"]


async def test_the_secret_is_answered_by_creation_and_rotation_only(gateway: Gateway) -> None:
    client = gateway.sdk()
    created = await client.webhooks.create(
        name="ci", url="https://hooks.example.com/t", event_types=JOB_EVENTS
    )
    assert created.object == "webhook_endpoint" and created.signing_secret.startswith("whsec_")
    assert created.signing_secret_hint == f"whsec_...{created.signing_secret[-4:]}"

    for shown in (await client.webhooks.retrieve(created.id), (await client.webhooks.list()).data[0]):
        assert shown.id == created.id and "signing_secret" not in shown.model_dump()
        assert shown.model_extra["delivery_stats"] == {"pending": 0, "delivered": 0, "failed": 0}
    updated = await client.webhooks.update(created.id, name="renamed", event_types=["fine_tuning.job.failed"])
    assert (updated.name, updated.event_types) == ("renamed", ["fine_tuning.job.failed"])
    assert "signing_secret" not in updated.model_dump()

    rotated = await client.webhooks.rotate_secret(created.id)
    assert rotated.signing_secret.startswith("whsec_") and rotated.signing_secret != created.signing_secret

    deleted = await client.webhooks.delete(created.id)
    assert (deleted.id, deleted.deleted, deleted.object) == (created.id, True, "webhook_endpoint.deleted")
    with pytest.raises(openai.NotFoundError):
        await client.webhooks.retrieve(created.id)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"name": "x", "url": "ftp://example.com/", "event_types": JOB_EVENTS}, "url"),
        ({"name": "x", "url": "https://u:p@example.com/", "event_types": JOB_EVENTS}, "url"),
        ({"name": "x", "url": "https://example.com/", "event_types": ["batch.completed"]}, "event_types"),
        ({"name": "x", "url": "https://example.com/", "event_types": []}, "event_types"),
        ({"name": "", "url": "https://example.com/", "event_types": JOB_EVENTS}, "name"),
        ({"url": "https://example.com/", "event_types": JOB_EVENTS}, "name"),
        ({"name": "x", "url": "https://example.com/", "event_types": JOB_EVENTS, "secret": "s"}, "secret"),
    ],
)
async def test_a_bad_endpoint_is_a_400_naming_the_field(gateway: Gateway, body: dict, param: str) -> None:
    async with gateway.http() as http:
        answer = await http.post("/v1/webhook_endpoints", json=body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["param"] == param


async def test_another_organizations_endpoint_is_a_404_everywhere(gateway: Gateway) -> None:
    mine = await gateway.sdk().webhooks.create(name="a", url="http://127.0.0.1:9/", event_types=JOB_EVENTS)
    theirs = gateway.sdk(KEY_B)
    with pytest.raises(openai.NotFoundError):
        await theirs.webhooks.retrieve(mine.id)
    with pytest.raises(openai.NotFoundError):
        await theirs.webhooks.delete(mine.id)
    async with gateway.http(KEY_B) as http:
        assert (await http.get(f"/v1/webhook_endpoints/{mine.id}/deliveries")).status_code == 404
    assert [endpoint.id async for endpoint in theirs.webhooks.list()] == []
