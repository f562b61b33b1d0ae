"""Webhooks of job outcomes reach a real receiver on loopback, signed as the openai SDK verifies.

Each job that succeeds, fails or is cancelled sends one event to each endpoint of its
organization that subscribes to it; a receiver that fails or hangs gets the event on a
later attempt, and every attempt is in the endpoint's delivery log; a trainer stopped
between the status change and the delivery sends the event once started again; another
organization's endpoint never sees the event, and each endpoint's deliveries are signed
with its own secret, which only its creation answered.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import grpc
import openai
import pytest

import tailor.trainer.v1.trainer_service_pb2 as trainer_pb2
import tailor.trainer.v1.webhook_service_pb2 as pb
import tailor.trainer.v1.webhook_service_pb2_grpc as webhook_grpc
from services.common.grpc_client import open_channel
from services.common.tenancy import call_context
from services.trainer.config import TrainerSettings
from services.trainer.records import TrainerRecords, now
from services.trainer.webhooks.delivery import WebhookDelivery
from tests.integration.trainer.conftest import ORG, OTHER_ORG
from tests.integration.trainer.harness import (
    FakeDataset,
    PlayedWorker,
    RecordingExecutor,
    TrainerClient,
    eventually,
    refusal,
    running_trainer,
)
from tests.support.webhook_receiver import HANG, Received, WebhookReceiver, webhook_receiver

SDK = openai.OpenAI(api_key="unused", base_url="http://127.0.0.1:9/v1")
ALL_TYPES = ["fine_tuning.job.succeeded", "fine_tuning.job.failed", "fine_tuning.job.cancelled"]


@pytest.fixture
def settings(settings: TrainerSettings) -> TrainerSettings:
    """Fast delivery: a pass every 0.1 s, retries after 0.05-0.2 s, a hanging receiver given 2 s.

    The timeout stays well above a loaded machine's answer time: an answer cut short is sent
    again, and the tests count what was sent.
    """
    return settings.model_copy(
        update=dict(
            trainer_webhook_interval_s=0.1,
            trainer_webhook_first_retry_s=0.1,
            trainer_webhook_max_retry_s=0.2,
            trainer_webhook_timeout_s=2.0,
        )
    )


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    async with webhook_receiver() as served:
        yield served


class Webhooks:
    """WebhookService, called as one organization or another."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.stub = webhook_grpc.WebhookServiceStub(channel)

    async def create(
        self, organization: str, url: str, event_types: list[str] = ALL_TYPES
    ) -> pb.CreateWebhookEndpointResponse:
        with call_context(organization, None):
            return await self.stub.CreateWebhookEndpoint(
                pb.CreateWebhookEndpointRequest(name="ci", url=url, event_types=event_types)
            )

    async def get(self, organization: str, endpoint_id: str) -> pb.WebhookEndpoint:
        with call_context(organization, None):
            request = pb.GetWebhookEndpointRequest(endpoint_id=endpoint_id)
            return (await self.stub.GetWebhookEndpoint(request)).endpoint

    async def attempts(self, organization: str, endpoint_id: str) -> list[pb.WebhookAttempt]:
        with call_context(organization, None):
            request = pb.ListWebhookAttemptsRequest(endpoint_id=endpoint_id, limit=100)
            return list((await self.stub.ListWebhookAttempts(request)).attempts)


@contextlib.asynccontextmanager
async def webhooks_of(trainer: TrainerClient, settings: TrainerSettings) -> AsyncIterator[Webhooks]:
    channel = open_channel(trainer.address, settings)
    try:
        yield Webhooks(channel)
    finally:
        await channel.close()


async def cancelled_job(trainer: TrainerClient, files: FakeDataset, organization: str) -> str:
    job = await trainer.create(organization, training_file=files.add_file(organization))
    with call_context(organization, None):
        await trainer.jobs.CancelJob(trainer_pb2.CancelJobRequest(job_id=job.id))
    return job.id


async def played_job(
    trainer: TrainerClient, files: FakeDataset, executor: RecordingExecutor, *, succeed: bool
) -> str:
    job = await trainer.create(ORG, training_file=files.add_file(ORG))
    worker = PlayedWorker(trainer, await executor.launched(job.id), ORG)
    plan = await worker.claim()
    await worker.started()
    if succeed:
        await worker.succeeded(plan)
    else:
        await worker.failed("training_diverged", retryable=False)
    return job.id


async def received(receiver: WebhookReceiver, count: int, path: str | None = None) -> list[Received]:
    async def enough() -> list[Received] | None:
        accepted = receiver.accepted(path)
        return accepted if len(accepted) >= count else None

    await eventually(enough, timeout=30, what=f"{count} accepted webhook(s)")
    return receiver.accepted(path)


async def test_each_outcome_delivers_one_event_the_sdk_verifies(
    scripted_trainer: TrainerClient,
    settings: TrainerSettings,
    files: FakeDataset,
    executor: RecordingExecutor,
    receiver: WebhookReceiver,
) -> None:
    async with webhooks_of(scripted_trainer, settings) as webhooks:
        created = await webhooks.create(ORG, receiver.url + "/hook")
        succeeded = await played_job(scripted_trainer, files, executor, succeed=True)
        failed = await played_job(scripted_trainer, files, executor, succeed=False)
        cancelled = await cancelled_job(scripted_trainer, files, ORG)

        requests = await received(receiver, 3)
        events = {}
        for request in requests:
            event = SDK.webhooks.unwrap(request.body, request.headers, secret=created.signing_secret)
            assert request.headers["webhook-id"] == event.id and event.id.startswith("evt_")
            assert event.object == "event"
            events[event.data.id] = event.type
        assert events == {
            succeeded: "fine_tuning.job.succeeded",
            failed: "fine_tuning.job.failed",
            cancelled: "fine_tuning.job.cancelled",
        }
        # The receiver has its 200 answers before the trainer records them: wait for the records.
        async def all_recorded() -> bool | None:
            endpoint = await webhooks.get(ORG, created.endpoint.id)
            return (endpoint.delivery_stats.delivered, endpoint.delivery_stats.pending) == (3, 0) or None

        await eventually(all_recorded, timeout=30, what="3 deliveries recorded as delivered")
        attempts = await webhooks.attempts(ORG, created.endpoint.id)
        assert sorted((a.status_code, a.state) for a in attempts) == [(200, "delivered")] * 3
    assert len(receiver.requests) == 3  # nothing sent twice


async def test_a_receiver_that_fails_then_hangs_gets_the_event_once_it_recovers(
    scripted_trainer: TrainerClient, settings: TrainerSettings, files: FakeDataset, receiver: WebhookReceiver
) -> None:
    receiver.answers = [500, HANG]
    async with webhooks_of(scripted_trainer, settings) as webhooks:
        created = await webhooks.create(ORG, receiver.url, ["fine_tuning.job.cancelled"])
        job_id = await cancelled_job(scripted_trainer, files, ORG)

        [accepted] = await received(receiver, 1)
        event = SDK.webhooks.unwrap(accepted.body, accepted.headers, secret=created.signing_secret)
        assert event.data.id == job_id
        assert [r.answered for r in receiver.requests] == [500, HANG, 200]
        assert len({r.headers["webhook-id"] for r in receiver.requests}) == 1  # one event, three attempts

        async def logged() -> list[pb.WebhookAttempt] | None:
            attempts = await webhooks.attempts(ORG, created.endpoint.id)
            return attempts if len(attempts) == 3 else None

        newest, hung, refused = await eventually(logged, timeout=10, what="three logged attempts")
        assert (refused.status_code, refused.error, refused.state) == (500, "HTTP 500", "pending")
        assert refused.HasField("next_attempt_at")
        assert not hung.HasField("status_code") and "no answer within" in hung.error
        assert hung.state == "pending"
        assert (newest.status_code, newest.state) == (200, "delivered")
        assert not newest.HasField("next_attempt_at")


async def test_a_delivery_never_accepted_is_marked_failed_after_the_give_up_time(
    settings: TrainerSettings, files: FakeDataset, receiver: WebhookReceiver
) -> None:
    receiver.answers = [503] * 1000
    soon = settings.model_copy(update={"trainer_webhook_give_up_s": 0.5})
    async with running_trainer(soon, RecordingExecutor()) as trainer, webhooks_of(trainer, soon) as webhooks:
        created = await webhooks.create(ORG, receiver.url)
        await cancelled_job(trainer, files, ORG)

        async def given_up() -> pb.WebhookEndpoint | None:
            endpoint = await webhooks.get(ORG, created.endpoint.id)
            return endpoint if endpoint.delivery_stats.failed else None

        endpoint = await eventually(given_up, timeout=30, what="the delivery to be given up")
        assert (endpoint.delivery_stats.pending, endpoint.delivery_stats.delivered) == (0, 0)
        last, *earlier = await webhooks.attempts(ORG, created.endpoint.id)
        assert (last.status_code, last.state, last.HasField("next_attempt_at")) == (503, "failed", False)
        assert all(attempt.state == "pending" for attempt in earlier)
        sent = len(receiver.requests)
    assert sent == len(earlier) + 1  # no attempt after giving up


async def test_a_restart_between_the_status_change_and_the_delivery_loses_nothing(
    settings: TrainerSettings, files: FakeDataset, receiver: WebhookReceiver
) -> None:
    paused = settings.model_copy(update={"trainer_webhook_delivery_paused": True})
    async with (
        running_trainer(paused, RecordingExecutor()) as trainer,
        webhooks_of(trainer, paused) as webhooks,
    ):
        created = await webhooks.create(ORG, receiver.url)
        job_id = await cancelled_job(trainer, files, ORG)
        assert (await webhooks.get(ORG, created.endpoint.id)).delivery_stats.delivered == 0
    assert receiver.requests == []

    async with running_trainer(settings, RecordingExecutor()):
        [request] = await received(receiver, 1)
    assert SDK.webhooks.unwrap(request.body, request.headers, secret=created.signing_secret).data.id == job_id


async def test_two_replicas_passing_at_the_same_moment_send_an_event_once(
    settings: TrainerSettings, files: FakeDataset, receiver: WebhookReceiver
) -> None:
    paused = settings.model_copy(update={"trainer_webhook_delivery_paused": True})
    async with (
        running_trainer(paused, RecordingExecutor()) as trainer,
        webhooks_of(trainer, paused) as webhooks,
    ):
        created = await webhooks.create(ORG, receiver.url)
        job_id = await cancelled_job(trainer, files, ORG)

    replicas = [WebhookDelivery(settings, TrainerRecords.open(settings)) for _ in range(2)]
    try:
        await asyncio.gather(*(replica.tick() for replica in replicas))  # fan-out and sending, at once
        await asyncio.gather(*(replica.tick() for replica in replicas))  # nothing is left to send
    finally:
        for replica in replicas:
            await replica.stop()
            await replica._records.close()
    [request] = receiver.requests
    assert SDK.webhooks.unwrap(request.body, request.headers, secret=created.signing_secret).data.id == job_id


async def test_an_organization_never_receives_another_ones_events_nor_its_secret(
    scripted_trainer: TrainerClient, settings: TrainerSettings, files: FakeDataset, receiver: WebhookReceiver
) -> None:
    async with webhooks_of(scripted_trainer, settings) as webhooks:
        mine = await webhooks.create(ORG, receiver.url + "/a")
        theirs = await webhooks.create(OTHER_ORG, receiver.url + "/b")
        my_job = await cancelled_job(scripted_trainer, files, ORG)
        their_job = await cancelled_job(scripted_trainer, files, OTHER_ORG)

        [to_me] = await received(receiver, 1, "/a")
        [to_them] = await received(receiver, 1, "/b")
        assert SDK.webhooks.unwrap(to_me.body, to_me.headers, secret=mine.signing_secret).data.id == my_job
        event = SDK.webhooks.unwrap(to_them.body, to_them.headers, secret=theirs.signing_secret)
        assert event.data.id == their_job
        with pytest.raises(openai.InvalidWebhookSignatureError):
            SDK.webhooks.verify_signature(to_me.body, to_me.headers, secret=theirs.signing_secret)

        missing = await refusal(webhooks.get(OTHER_ORG, mine.endpoint.id))
        assert missing.status == grpc.StatusCode.NOT_FOUND
        # Only creation answered the secret: later reads hold a hint of it, never the secret.
        shown = await webhooks.get(ORG, mine.endpoint.id)
        assert mine.signing_secret.startswith("whsec_")
        assert mine.signing_secret not in str(shown)
        assert shown.signing_secret_hint.endswith(mine.signing_secret[-4:])
    assert len(receiver.requests) == 2


async def test_a_bad_url_or_event_type_is_named(
    scripted_trainer: TrainerClient, settings: TrainerSettings, receiver: WebhookReceiver
) -> None:
    async with webhooks_of(scripted_trainer, settings) as webhooks:
        bad_url = await refusal(webhooks.create(ORG, "ftp://example.com/"))
        assert bad_url.status == grpc.StatusCode.INVALID_ARGUMENT and bad_url.param == "url"
        bad_type = await refusal(webhooks.create(ORG, receiver.url, ["batch.completed"]))
        assert bad_type.param == "event_types" and "batch.completed" in bad_type.message



async def test_ended_deliveries_are_pruned_after_the_retention_and_pending_ones_kept(
    settings: TrainerSettings, files: FakeDataset, receiver: WebhookReceiver
) -> None:
    async with running_trainer(settings, RecordingExecutor()) as trainer, webhooks_of(trainer, settings) as webhooks:
        answered = await webhooks.create(ORG, receiver.url)
        refused = await webhooks.create(ORG, "http://127.0.0.1:9/hook")  # nothing listens: retried
        await cancelled_job(trainer, files, ORG)

        async def both_tried() -> bool | None:
            delivered = (await webhooks.get(ORG, answered.endpoint.id)).delivery_stats.delivered
            return (delivered == 1 and bool(await webhooks.attempts(ORG, refused.endpoint.id))) or None

        # The receiver's answer is recorded after it is sent: wait for the record, not the request.
        await eventually(
            both_tried, timeout=30, what="a recorded delivery, and an attempt at the refusing endpoint"
        )

    records = TrainerRecords.open(settings)
    pruner = WebhookDelivery(settings, records)
    try:
        assert await pruner.prune(ended_before=now() + 10) == 1  # the delivered one; the pending one stays
        assert await pruner.prune(ended_before=now() + 10) == 0
    finally:
        await records.close()

    paused = settings.model_copy(update={"trainer_webhook_delivery_paused": True})
    async with running_trainer(paused, RecordingExecutor()) as trainer, webhooks_of(trainer, paused) as webhooks:
        pruned = await webhooks.get(ORG, answered.endpoint.id)
        assert (pruned.delivery_stats.delivered, await webhooks.attempts(ORG, answered.endpoint.id)) == (0, [])
        kept = await webhooks.get(ORG, refused.endpoint.id)
        assert kept.delivery_stats.pending == 1
        assert await webhooks.attempts(ORG, refused.endpoint.id)
