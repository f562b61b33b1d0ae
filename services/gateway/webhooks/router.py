"""Routes of /v1/webhook_endpoints, as the openai SDK's ``client.webhooks`` calls them.

Create, list, retrieve, update (POST), delete and ``rotate_secret`` follow the SDK;
``/deliveries`` (the endpoint's delivery attempts) is Tailor's own. The signing secret is
in the answers of create and rotate_secret only.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from services.gateway.auth import CallerDep
from services.gateway.webhooks.protocol import (
    CreateWebhookEndpointRequest,
    DeletedWebhookEndpoint,
    UpdateWebhookEndpointRequest,
    WebhookDeliveryAttemptList,
    WebhookEndpoint,
    WebhookEndpointList,
    WebhookEndpointWithSecret,
)
from services.gateway.webhooks.serving import OpenAIServingWebhooks, serving_of

router = APIRouter(prefix="/v1/webhook_endpoints", tags=["webhooks"])
Serving = Annotated[OpenAIServingWebhooks, Depends(serving_of)]
Limit = Annotated[int | None, Query(ge=1, le=100)]


@router.post("", response_model=WebhookEndpointWithSecret)
async def create_webhook_endpoint(
    body: CreateWebhookEndpointRequest, caller: CallerDep, serving: Serving
) -> WebhookEndpointWithSecret:
    """Creates an endpoint; the answer holds its `whsec_` signing secret, shown this once."""
    return await serving.create(caller, body)


@router.get("", response_model=WebhookEndpointList)
async def list_webhook_endpoints(
    caller: CallerDep, serving: Serving, after: str | None = None, limit: Limit = None
) -> WebhookEndpointList:
    """Lists the organization's endpoints, newest first, ``after`` an endpoint id (exclusive)."""
    return await serving.list(caller, after=after, limit=limit)


@router.get("/{webhook_endpoint_id}", response_model=WebhookEndpoint)
async def retrieve_webhook_endpoint(
    webhook_endpoint_id: str, caller: CallerDep, serving: Serving
) -> WebhookEndpoint:
    """Returns one endpoint with its delivery counts (never its secret)."""
    return await serving.retrieve(caller, webhook_endpoint_id)


@router.post("/{webhook_endpoint_id}", response_model=WebhookEndpoint)
async def update_webhook_endpoint(
    webhook_endpoint_id: str, body: UpdateWebhookEndpointRequest, caller: CallerDep, serving: Serving
) -> WebhookEndpoint:
    """Changes the endpoint's name, URL or event types (the complete new set)."""
    return await serving.update(caller, webhook_endpoint_id, body)


@router.delete("/{webhook_endpoint_id}", response_model=DeletedWebhookEndpoint)
async def delete_webhook_endpoint(
    webhook_endpoint_id: str, caller: CallerDep, serving: Serving
) -> DeletedWebhookEndpoint:
    """Deletes the endpoint; its pending deliveries are dropped."""
    return await serving.delete(caller, webhook_endpoint_id)


@router.post("/{webhook_endpoint_id}/rotate_secret", response_model=WebhookEndpointWithSecret)
async def rotate_webhook_endpoint_secret(
    webhook_endpoint_id: str, caller: CallerDep, serving: Serving
) -> WebhookEndpointWithSecret:
    """Replaces the signing secret; the answer holds the new one, shown this once."""
    unchanged = UpdateWebhookEndpointRequest()
    rotated = await serving.update(caller, webhook_endpoint_id, unchanged, rotate_secret=True)
    assert isinstance(rotated, WebhookEndpointWithSecret)
    return rotated


@router.get("/{webhook_endpoint_id}/deliveries", response_model=WebhookDeliveryAttemptList)
async def list_webhook_deliveries(
    webhook_endpoint_id: str,
    caller: CallerDep,
    serving: Serving,
    after: str | None = None,
    limit: Limit = None,
) -> WebhookDeliveryAttemptList:
    """Tailor extension: the endpoint's delivery attempts, newest first (event, status or error, retry)."""
    return await serving.list_attempts(caller, webhook_endpoint_id, after=after, limit=limit)
