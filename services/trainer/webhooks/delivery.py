"""The delivery loop: fans outbox events out to endpoints and sends what is due, at least once.

Every ``trainer_webhook_interval_s`` (an asyncio task of the trainer, started with its server):

1. **Fan-out.** Each new event of the outbox gets one delivery row per endpoint of its
   organization that existed when the event happened (created at or before it) and
   subscribes to its type. An event is taken by a conditional UPDATE of its ``fanned_out``
   flag, so two replicas never fan one out twice.
2. **Claim.** Due pending deliveries are leased (``lease_until``) by a conditional UPDATE
   that only succeeds while no other replica holds an unexpired lease: replicas sharing
   one Postgres never send a delivery concurrently. A replica that dies mid-send leaves a
   lease that expires, and the delivery is sent again (at least once, never lost).
3. **Send.** One POST per delivery: the event's JSON (the same bytes on every attempt),
   signed for this attempt with its endpoint's own secret (:mod:`.signing`). Redirects are
   not followed (a redirect could lead past the allowed targets). A 2xx answer delivers it;
   anything else (another status, a refused connection, no answer within
   ``trainer_webhook_timeout_s``) is retried after ``first_retry_s * 2**(n-1)``, capped
   at ``max_retry_s``, with jitter (a random 50-100% of it, so that endpoints coming back
   are not hit by every delivery at once); a retry that would come later than
   ``give_up_s`` after the event marks the delivery failed. Each attempt is logged
   (``webhook_attempts``) for the endpoint's delivery log.
4. **Prune.** Every ``_PRUNE_INTERVAL_S``, deliveries that ended (delivered or failed) more
   than ``trainer_webhook_retention_s`` ago go with their attempts, and so do events older than
   that whose deliveries are all gone: the tables stay bounded by the retention window
   rather than growing with every job ever run. A pending delivery is never pruned.

Everything lives in the records, so a restarted trainer continues where the last stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass

import httpx
import structlog
from sqlalchemy import delete, exists, or_, select, update

from services.common.backoff import doubling_delay
from services.common.ids import random_token
from services.trainer.config import TrainerSettings
from services.trainer.records import (
    TrainerRecords,
    WebhookAttemptRecord,
    WebhookDeliveryRecord,
    WebhookEndpointRecord,
    WebhookEventRecord,
    now,
)
from services.trainer.webhooks.events import payload
from services.trainer.webhooks.signing import signed_headers
from services.trainer.webhooks.targets import target_allowed

log = structlog.get_logger("tailor.trainer.webhooks")

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
_BATCH = 50
# A lease outlives the request it covers by this much (the answer still has to be recorded).
_LEASE_MARGIN_S = 30.0
# How often a replica prunes ended deliveries (pruning is idempotent; replicas may overlap).
_PRUNE_INTERVAL_S = 600.0


@dataclass(frozen=True)
class _Claimed:
    delivery_id: str
    url: str
    secret: str
    body: bytes
    event_id: str


@dataclass(frozen=True)
class _Outcome:
    status_code: int | None
    error: str

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class WebhookDelivery:
    """The loop of one trainer replica; :meth:`tick` is one pass (tests call it directly too)."""

    def __init__(self, settings: TrainerSettings, records: TrainerRecords) -> None:
        self._settings = settings
        self._records = records
        self._client: httpx.AsyncClient | None = None
        self._task: asyncio.Task[None] | None = None
        self._next_prune = 0.0

    async def start(self) -> None:
        """Starts sending, unless ``trainer_webhook_delivery_paused`` keeps events in the outbox."""
        if self._settings.trainer_webhook_delivery_paused:
            log.info("webhook delivery paused; events stay in the outbox")
            return
        self._task = asyncio.create_task(self._run(), name="trainer-webhook-delivery")

    async def stop(self) -> None:
        """Stops the loop; a send cut short keeps its lease and is sent again once it expires."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:  # a database outage: the next pass tries again
                log.exception("webhook delivery pass failed")
            await asyncio.sleep(self._settings.trainer_webhook_interval_s)

    async def tick(self) -> None:
        """Fans out new events, sends every due delivery this replica could claim, prunes now and then."""
        await self._fan_out()
        claimed = await self._claim_due()
        await asyncio.gather(*(self._deliver(one) for one in claimed))
        if time.monotonic() >= self._next_prune:
            self._next_prune = time.monotonic() + _PRUNE_INTERVAL_S
            await self.prune(now() - self._settings.trainer_webhook_retention_s)

    async def prune(self, ended_before: float) -> int:
        """Removes deliveries that ended before ``ended_before`` (Unix seconds) with their attempts,
        and the fanned-out events before it that no delivery refers to any more. Returns how many
        deliveries went."""
        ended = WebhookDeliveryRecord.state.in_((DELIVERED, FAILED))
        # A delivery ends only by an attempt (_record), so its last attempt dates its end.
        old = WebhookDeliveryRecord.last_attempt_at < ended_before
        async with self._records.write() as session:
            gone = (await session.scalars(select(WebhookDeliveryRecord.id).where(ended, old))).all()
            for start in range(0, len(gone), 500):
                batch = gone[start : start + 500]
                attempts = delete(WebhookAttemptRecord).where(WebhookAttemptRecord.delivery_id.in_(batch))
                await session.execute(attempts)
                deliveries = delete(WebhookDeliveryRecord).where(WebhookDeliveryRecord.id.in_(batch))
                await session.execute(deliveries)
            referred = exists().where(WebhookDeliveryRecord.event_id == WebhookEventRecord.id)
            await session.execute(
                delete(WebhookEventRecord)
                .where(
                    WebhookEventRecord.fanned_out.is_(True),
                    WebhookEventRecord.created_at < ended_before,
                    ~referred,
                )
                .execution_options(synchronize_session=False)
            )
        if gone:
            log.info("webhook deliveries pruned", deliveries=len(gone))
        return len(gone)

    async def _fan_out(self) -> None:
        async with self._records.write() as session:
            events = (
                await session.scalars(
                    select(WebhookEventRecord)
                    .where(WebhookEventRecord.fanned_out.is_(False))
                    .order_by(WebhookEventRecord.seq)
                    .limit(_BATCH)
                )
            ).all()
            for event in events:
                taken = await session.execute(
                    update(WebhookEventRecord)
                    .where(WebhookEventRecord.id == event.id, WebhookEventRecord.fanned_out.is_(False))
                    .values(fanned_out=True)
                    .execution_options(synchronize_session=False)
                )
                if taken.rowcount != 1:  # another replica fanned it out
                    continue
                endpoints = await session.scalars(
                    select(WebhookEndpointRecord).where(
                        WebhookEndpointRecord.organization_id == event.organization_id,
                        WebhookEndpointRecord.created_at <= event.created_at,
                    )
                )
                for endpoint in endpoints:
                    if event.type in endpoint.event_types:
                        session.add(_delivery(event, endpoint))

    async def _claim_due(self) -> list[_Claimed]:
        moment = time.time()
        lease_until = moment + self._settings.trainer_webhook_timeout_s + _LEASE_MARGIN_S
        free = or_(WebhookDeliveryRecord.lease_until.is_(None), WebhookDeliveryRecord.lease_until < moment)
        claimed: list[_Claimed] = []
        async with self._records.write() as session:
            due = (
                await session.execute(
                    select(WebhookDeliveryRecord, WebhookEndpointRecord)
                    .join(
                        WebhookEndpointRecord, WebhookEndpointRecord.id == WebhookDeliveryRecord.endpoint_id
                    )
                    .where(
                        WebhookDeliveryRecord.state == PENDING,
                        WebhookDeliveryRecord.next_attempt_at <= moment,
                        free,
                    )
                    .order_by(WebhookDeliveryRecord.next_attempt_at)
                    .limit(_BATCH)
                )
            ).all()
            for delivery, endpoint in due:
                taken = await session.execute(
                    update(WebhookDeliveryRecord)
                    .where(
                        WebhookDeliveryRecord.id == delivery.id, WebhookDeliveryRecord.state == PENDING, free
                    )
                    .values(lease_until=lease_until)
                    .execution_options(synchronize_session=False)
                )
                if taken.rowcount == 1:
                    body = payload(
                        delivery.event_id, delivery.event_type, delivery.event_created_at, delivery.object_id
                    )
                    claimed.append(
                        _Claimed(delivery.id, endpoint.url, endpoint.secret, body, delivery.event_id)
                    )
        return claimed

    async def _deliver(self, claimed: _Claimed) -> None:
        outcome = await self._send(claimed)
        await self._record(claimed, outcome)

    async def _send(self, claimed: _Claimed) -> _Outcome:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=self._settings.trainer_webhook_timeout_s, follow_redirects=False, trust_env=False
            )
        if not await target_allowed(claimed.url, self._settings.trainer_webhook_allowed_targets):
            return _Outcome(None, "the URL's host is not among the allowed webhook targets")
        headers = signed_headers(claimed.secret, claimed.event_id, now(), claimed.body)
        timeout = self._settings.trainer_webhook_timeout_s
        try:
            async with asyncio.timeout(timeout):
                # The answer's body is never read: only its status counts.
                request = self._client.stream("POST", claimed.url, content=claimed.body, headers=headers)
                async with request as answer:
                    error = "" if answer.is_success else f"HTTP {answer.status_code}"
                    return _Outcome(answer.status_code, error)
        except (TimeoutError, httpx.TimeoutException):
            return _Outcome(None, f"no answer within {timeout:g} s")
        except httpx.HTTPError as error:
            return _Outcome(None, f"{type(error).__name__}: {error}" if str(error) else type(error).__name__)

    async def _record(self, claimed: _Claimed, outcome: _Outcome) -> None:
        settings = self._settings
        async with self._records.write() as session:
            delivery = await session.scalar(
                select(WebhookDeliveryRecord).where(WebhookDeliveryRecord.id == claimed.delivery_id)
            )
            if delivery is None:  # its endpoint was deleted meanwhile
                return
            delivery.attempts += 1
            delivery.last_attempt_at = now()
            delivery.last_status_code = outcome.status_code
            delivery.last_error = outcome.error
            delivery.lease_until = None
            next_attempt: float | None = None
            if outcome.delivered:
                delivery.state = DELIVERED
            else:
                first, cap = settings.trainer_webhook_first_retry_s, settings.trainer_webhook_max_retry_s
                next_attempt = time.time() + retry_delay(delivery.attempts, first, cap)
                if next_attempt > delivery.event_created_at + settings.trainer_webhook_give_up_s:
                    delivery.state, next_attempt = FAILED, None
                else:
                    delivery.next_attempt_at = next_attempt
            session.add(
                WebhookAttemptRecord(
                    id=f"whatt_{random_token(24)}",
                    organization_id=delivery.organization_id,
                    endpoint_id=delivery.endpoint_id,
                    delivery_id=delivery.id,
                    event_id=delivery.event_id,
                    event_type=delivery.event_type,
                    attempted_at=delivery.last_attempt_at,
                    status_code=outcome.status_code,
                    error=outcome.error,
                    state=delivery.state,
                    next_attempt_at=None if next_attempt is None else int(next_attempt),
                )
            )
        if not outcome.delivered:
            given_up = next_attempt is None
            (log.warning if given_up else log.info)(
                "webhook delivery given up" if given_up else "webhook delivery attempt failed",
                delivery=claimed.delivery_id,
                error=outcome.error,
            )


def retry_delay(attempts: int, first_s: float, cap_s: float) -> float:
    """Seconds until the next attempt after ``attempts`` failed ones: doubling from ``first_s`` up to
    ``cap_s``, then a random 50-100% of it (jitter, so that retries to an endpoint coming back spread)."""
    return doubling_delay(attempts, first_s, cap_s) * random.uniform(0.5, 1.0)


def _delivery(event: WebhookEventRecord, endpoint: WebhookEndpointRecord) -> WebhookDeliveryRecord:
    return WebhookDeliveryRecord(
        id=f"whdel_{random_token(24)}",
        organization_id=event.organization_id,
        endpoint_id=endpoint.id,
        event_id=event.id,
        event_type=event.type,
        object_id=event.object_id,
        event_created_at=event.created_at,
        state=PENDING,
        attempts=0,
        next_attempt_at=0.0,
        last_error="",
    )
