"""An organization's webhook endpoints: the logic behind WebhookService, and its servicer.

Every query filters by the caller's organization: another organization's endpoint reads
as missing. The signing secret is generated here and answered only by creation and by a
rotation; afterwards only its hint (``whsec_...`` and its last four characters) is shown.
"""

from __future__ import annotations

from typing import Any

import grpc
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

import tailor.trainer.v1.webhook_service_pb2 as pb
import tailor.trainer.v1.webhook_service_pb2_grpc as webhook_grpc
from services.common.database import paginate
from services.common.errors import InvalidArgument, NotFound, shown
from services.common.ids import random_token
from services.common.tenancy import current_organization
from services.trainer.config import TrainerSettings
from services.trainer.jobs import page_size
from services.trainer.records import (
    TrainerRecords,
    WebhookAttemptRecord,
    WebhookDeliveryRecord,
    WebhookEndpointRecord,
    now,
)
from services.trainer.webhooks.delivery import DELIVERED, FAILED, PENDING
from services.trainer.webhooks.events import EVENT_TYPES
from services.trainer.webhooks.signing import new_secret, secret_hint
from services.trainer.webhooks.targets import check_url

DEFAULT_PAGE = 20
MAX_NAME_LENGTH = 256


def _check_name(name: str) -> str:
    if not name.strip() or len(name) > MAX_NAME_LENGTH:
        raise InvalidArgument(f"name must be 1-{MAX_NAME_LENGTH} characters, not blank.", param="name")
    return name


def _check_event_types(event_types: list[str]) -> list[str]:
    if not event_types:
        raise InvalidArgument("event_types must name at least one event type.", param="event_types")
    unknown = [event_type for event_type in event_types if event_type not in EVENT_TYPES]
    if unknown:
        raise InvalidArgument(
            f"event_types: {', '.join(repr(shown(t)) for t in unknown[:3])} not supported; "
            f"supported: {', '.join(EVENT_TYPES)}.",
            param="event_types",
        )
    return list(dict.fromkeys(event_types))


class WebhookEndpoints:
    """Creates, reads, changes and deletes endpoints, and reads their delivery log."""

    def __init__(self, settings: TrainerSettings, records: TrainerRecords) -> None:
        self._settings = settings
        self._records = records

    async def create(self, request: pb.CreateWebhookEndpointRequest) -> pb.CreateWebhookEndpointResponse:
        name = _check_name(request.name)
        url = check_url(request.url, self._settings.trainer_webhook_allowed_targets)
        event_types = _check_event_types(list(request.event_types))
        secret, moment = new_secret(), now()
        record = WebhookEndpointRecord(
            id=f"we_{random_token(24)}",
            organization_id=current_organization(),
            created_at=moment,
            updated_at=moment,
            name=name,
            url=url,
            event_types=event_types,
            secret=secret,
        )
        async with self._records.write() as session:
            session.add(record)
            shown = await self._to_proto(session, record)
        return pb.CreateWebhookEndpointResponse(endpoint=shown, signing_secret=secret)

    async def get(self, endpoint_id: str) -> pb.WebhookEndpoint:
        async with self._records.read() as session:
            return await self._to_proto(session, await _endpoint(session, endpoint_id))

    async def list(self, limit: int, after: str) -> tuple[list[pb.WebhookEndpoint], bool]:
        query = select(WebhookEndpointRecord).where(
            WebhookEndpointRecord.organization_id == current_organization()
        )
        async with self._records.read() as session:
            rows, has_more = await paginate(
                session,
                query,
                seq=WebhookEndpointRecord.seq,
                id_column=WebhookEndpointRecord.id,
                after=after or None,
                limit=page_size(limit, DEFAULT_PAGE),
            )
            return [await self._to_proto(session, row) for row in rows], has_more

    async def update(self, request: pb.UpdateWebhookEndpointRequest) -> pb.UpdateWebhookEndpointResponse:
        changes: dict[str, Any] = {}
        if request.HasField("name"):
            changes["name"] = _check_name(request.name)
        if request.HasField("url"):
            changes["url"] = check_url(request.url, self._settings.trainer_webhook_allowed_targets)
        if request.set_event_types:
            changes["event_types"] = _check_event_types(list(request.event_types))
        secret = new_secret() if request.rotate_secret else ""
        if secret:
            changes["secret"] = secret
        async with self._records.write() as session:
            record = await _endpoint(session, request.endpoint_id)
            changed = {key: value for key, value in changes.items() if getattr(record, key) != value}
            for key, value in changed.items():
                setattr(record, key, value)
            if changed:
                record.updated_at = now()
            shown = await self._to_proto(session, record)
        return pb.UpdateWebhookEndpointResponse(endpoint=shown, signing_secret=secret)

    async def delete(self, endpoint_id: str) -> None:
        async with self._records.write() as session:
            record = await _endpoint(session, endpoint_id)
            for table in (WebhookDeliveryRecord, WebhookAttemptRecord):
                await session.execute(delete(table).where(table.endpoint_id == record.id))
            await session.delete(record)

    async def list_attempts(
        self, endpoint_id: str, limit: int, after: str
    ) -> tuple[list[pb.WebhookAttempt], bool]:
        async with self._records.read() as session:
            record = await _endpoint(session, endpoint_id)
            query = select(WebhookAttemptRecord).where(WebhookAttemptRecord.endpoint_id == record.id)
            rows, has_more = await paginate(
                session,
                query,
                seq=WebhookAttemptRecord.seq,
                id_column=WebhookAttemptRecord.id,
                after=after or None,
                limit=page_size(limit, DEFAULT_PAGE),
            )
        return [_attempt_proto(row) for row in rows], has_more

    async def _to_proto(self, session: AsyncSession, record: WebhookEndpointRecord) -> pb.WebhookEndpoint:
        counts = dict(
            (
                await session.execute(
                    select(WebhookDeliveryRecord.state, func.count())
                    .where(WebhookDeliveryRecord.endpoint_id == record.id)
                    .group_by(WebhookDeliveryRecord.state)
                )
            ).all()
        )
        return pb.WebhookEndpoint(
            id=record.id,
            created_at=record.created_at,
            updated_at=record.updated_at,
            name=record.name,
            url=record.url,
            event_types=record.event_types,
            signing_secret_hint=secret_hint(record.secret),
            delivery_stats=pb.WebhookDeliveryStats(
                pending=counts.get(PENDING, 0),
                delivered=counts.get(DELIVERED, 0),
                failed=counts.get(FAILED, 0),
            ),
        )


async def _endpoint(session: AsyncSession, endpoint_id: str) -> WebhookEndpointRecord:
    record = await session.scalar(
        select(WebhookEndpointRecord).where(
            WebhookEndpointRecord.id == endpoint_id,
            WebhookEndpointRecord.organization_id == current_organization(),
        )
    )
    if record is None:
        raise endpoint_not_found(endpoint_id)
    return record


def endpoint_not_found(endpoint_id: str) -> NotFound:
    """The error for an endpoint missing from the caller's organization (another's reads as missing)."""
    return NotFound(
        f"No webhook endpoint found with id {shown(endpoint_id)!r}.",
        param="webhook_endpoint_id",
        code="not_found",
    )


def _attempt_proto(row: WebhookAttemptRecord) -> pb.WebhookAttempt:
    attempt = pb.WebhookAttempt(
        id=row.id,
        event_id=row.event_id,
        event_type=row.event_type,
        attempted_at=row.attempted_at,
        error=row.error,
        state=row.state,
    )
    if row.status_code is not None:
        attempt.status_code = row.status_code
    if row.next_attempt_at is not None:
        attempt.next_attempt_at = row.next_attempt_at
    return attempt


Context = grpc.aio.ServicerContext


class WebhookServicer(webhook_grpc.WebhookServiceServicer):
    """WebhookService over :class:`WebhookEndpoints`."""

    def __init__(self, endpoints: WebhookEndpoints) -> None:
        self._endpoints = endpoints

    async def CreateWebhookEndpoint(
        self, request: pb.CreateWebhookEndpointRequest, context: Context
    ) -> pb.CreateWebhookEndpointResponse:
        """Creates an endpoint and answers its secret, this once."""
        return await self._endpoints.create(request)

    async def GetWebhookEndpoint(
        self, request: pb.GetWebhookEndpointRequest, context: Context
    ) -> pb.GetWebhookEndpointResponse:
        """Returns one endpoint with its delivery counts."""
        return pb.GetWebhookEndpointResponse(endpoint=await self._endpoints.get(request.endpoint_id))

    async def ListWebhookEndpoints(
        self, request: pb.ListWebhookEndpointsRequest, context: Context
    ) -> pb.ListWebhookEndpointsResponse:
        """Lists the organization's endpoints, newest first."""
        endpoints, has_more = await self._endpoints.list(request.limit, request.after)
        return pb.ListWebhookEndpointsResponse(endpoints=endpoints, has_more=has_more)

    async def UpdateWebhookEndpoint(
        self, request: pb.UpdateWebhookEndpointRequest, context: Context
    ) -> pb.UpdateWebhookEndpointResponse:
        """Changes an endpoint or rotates its secret."""
        return await self._endpoints.update(request)

    async def DeleteWebhookEndpoint(
        self, request: pb.DeleteWebhookEndpointRequest, context: Context
    ) -> pb.DeleteWebhookEndpointResponse:
        """Deletes an endpoint and its pending deliveries."""
        await self._endpoints.delete(request.endpoint_id)
        return pb.DeleteWebhookEndpointResponse(endpoint_id=request.endpoint_id)

    async def ListWebhookAttempts(
        self, request: pb.ListWebhookAttemptsRequest, context: Context
    ) -> pb.ListWebhookAttemptsResponse:
        """Lists an endpoint's delivery attempts, newest first."""
        attempts, has_more = await self._endpoints.list_attempts(
            request.endpoint_id, request.limit, request.after
        )
        return pb.ListWebhookAttemptsResponse(attempts=attempts, has_more=has_more)
