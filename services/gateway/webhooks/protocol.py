"""The openai SDK's webhook endpoint shapes (``client.webhooks.create/list/retrieve/update/delete``).

Tailor adds ``delivery_stats`` to an endpoint and serves its delivery log
(``/deliveries``), which OpenAI's API does not have.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from services.gateway.protocol import CursorPage
from tailor.trainer.v1 import webhook_service_pb2 as pb

URL = Field(min_length=1, max_length=2048, description="The http(s) URL that receives deliveries.")
NAME = Field(min_length=1, max_length=256, description="A human-readable name.")
EVENT_TYPES = Field(
    min_length=1,
    max_length=32,
    description=(
        "Event types delivered: fine_tuning.job.succeeded, fine_tuning.job.failed, fine_tuning.job.cancelled."
    ),
)


class CreateWebhookEndpointRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = NAME
    url: str = URL
    event_types: list[str] = EVENT_TYPES


class UpdateWebhookEndpointRequest(BaseModel):
    """Fields given replace the current ones; ``event_types`` is the complete new set."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=256, description="A new name.")
    url: str | None = Field(None, min_length=1, max_length=2048, description="A new http(s) URL.")
    event_types: list[str] | None = Field(
        None, min_length=1, max_length=32, description="The complete new set."
    )


class DeliveryStats(BaseModel):
    """Tailor extension: how the endpoint's deliveries (one per event) stand."""

    pending: int = Field(description="Not yet accepted; still retried.")
    delivered: int = Field(description="Accepted with a 2xx answer.")
    failed: int = Field(description="Given up on after the retry period.")


class WebhookEndpoint(BaseModel):
    id: str
    object: Literal["webhook_endpoint"] = "webhook_endpoint"
    created_at: int
    updated_at: int
    name: str
    url: str
    event_types: list[str]
    signing_secret_hint: str
    delivery_stats: DeliveryStats

    @classmethod
    def from_proto(cls, endpoint: pb.WebhookEndpoint) -> WebhookEndpoint:
        stats = endpoint.delivery_stats
        return cls(
            id=endpoint.id,
            created_at=endpoint.created_at,
            updated_at=endpoint.updated_at,
            name=endpoint.name,
            url=endpoint.url,
            event_types=list(endpoint.event_types),
            signing_secret_hint=endpoint.signing_secret_hint,
            delivery_stats=DeliveryStats(
                pending=stats.pending, delivered=stats.delivered, failed=stats.failed
            ),
        )


class WebhookEndpointWithSecret(WebhookEndpoint):
    """Answered by creation and by a secret rotation only."""

    signing_secret: str = Field(description="The whsec_ secret deliveries are signed with; shown this once.")


class WebhookEndpointList(CursorPage[WebhookEndpoint]):
    pass


class DeletedWebhookEndpoint(BaseModel):
    id: str
    object: Literal["webhook_endpoint.deleted"] = "webhook_endpoint.deleted"
    deleted: bool = True


class WebhookDeliveryAttempt(BaseModel):
    """Tailor extension: one attempt to deliver an event to the endpoint."""

    id: str
    object: Literal["webhook_endpoint.delivery_attempt"] = "webhook_endpoint.delivery_attempt"
    event_id: str = Field(description="The event (and `webhook-id` header) sent.")
    event_type: str
    attempted_at: int
    status_code: int | None = Field(description="The endpoint's HTTP status; null when it gave none.")
    error: str | None = Field(description="Why the attempt failed; null when it succeeded.")
    state: Literal["pending", "delivered", "failed"] = Field(
        description="The delivery's state after this attempt."
    )
    next_attempt_at: int | None = Field(
        description="When the next attempt is due; null once delivered or failed."
    )

    @classmethod
    def from_proto(cls, attempt: pb.WebhookAttempt) -> WebhookDeliveryAttempt:
        return cls(
            id=attempt.id,
            event_id=attempt.event_id,
            event_type=attempt.event_type,
            attempted_at=attempt.attempted_at,
            status_code=attempt.status_code if attempt.HasField("status_code") else None,
            error=attempt.error or None,
            state=attempt.state,  # type: ignore[arg-type]
            next_attempt_at=attempt.next_attempt_at if attempt.HasField("next_attempt_at") else None,
        )


class WebhookDeliveryAttemptList(CursorPage[WebhookDeliveryAttempt]):
    pass
