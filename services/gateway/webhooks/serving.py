"""Webhook endpoints: the trainer's WebhookService, called as the caller's organization."""

from __future__ import annotations

from fastapi import Request

from services.gateway.auth import Caller
from services.gateway.webhooks.protocol import (
    CreateWebhookEndpointRequest,
    DeletedWebhookEndpoint,
    UpdateWebhookEndpointRequest,
    WebhookDeliveryAttempt,
    WebhookDeliveryAttemptList,
    WebhookEndpoint,
    WebhookEndpointList,
    WebhookEndpointWithSecret,
)
from tailor.trainer.v1 import webhook_service_pb2 as pb
from tailor.trainer.v1 import webhook_service_pb2_grpc as webhook_grpc


# async: FastAPI would run a plain `def` dependency in its thread pool, a costly hop per request
async def serving_of(request: Request) -> OpenAIServingWebhooks:
    """The route dependency: a thin object over the trainer's WebhookService stub."""
    return OpenAIServingWebhooks(request.app.state.upstreams.webhooks)


class OpenAIServingWebhooks:
    """Handles /v1/webhook_endpoints."""

    def __init__(self, stub: webhook_grpc.WebhookServiceStub) -> None:
        self._stub = stub

    async def create(self, caller: Caller, body: CreateWebhookEndpointRequest) -> WebhookEndpointWithSecret:
        request = pb.CreateWebhookEndpointRequest(name=body.name, url=body.url, event_types=body.event_types)
        with caller.rpc_context():
            response: pb.CreateWebhookEndpointResponse = await self._stub.CreateWebhookEndpoint(request)
        shown = WebhookEndpoint.from_proto(response.endpoint)
        return WebhookEndpointWithSecret(**shown.model_dump(), signing_secret=response.signing_secret)

    async def list(self, caller: Caller, *, after: str | None, limit: int | None) -> WebhookEndpointList:
        request = pb.ListWebhookEndpointsRequest(after=after or "", limit=limit or 0)
        with caller.rpc_context():
            response: pb.ListWebhookEndpointsResponse = await self._stub.ListWebhookEndpoints(request)
        endpoints = [WebhookEndpoint.from_proto(endpoint) for endpoint in response.endpoints]
        return WebhookEndpointList.of(endpoints, response.has_more)

    async def retrieve(self, caller: Caller, endpoint_id: str) -> WebhookEndpoint:
        with caller.rpc_context():
            response: pb.GetWebhookEndpointResponse = await self._stub.GetWebhookEndpoint(
                pb.GetWebhookEndpointRequest(endpoint_id=endpoint_id)
            )
        return WebhookEndpoint.from_proto(response.endpoint)

    async def update(
        self,
        caller: Caller,
        endpoint_id: str,
        body: UpdateWebhookEndpointRequest,
        *,
        rotate_secret: bool = False,
    ) -> WebhookEndpoint | WebhookEndpointWithSecret:
        request = pb.UpdateWebhookEndpointRequest(endpoint_id=endpoint_id, rotate_secret=rotate_secret)
        if body.name is not None:
            request.name = body.name
        if body.url is not None:
            request.url = body.url
        if body.event_types is not None:
            request.event_types.extend(body.event_types)
            request.set_event_types = True
        with caller.rpc_context():
            response: pb.UpdateWebhookEndpointResponse = await self._stub.UpdateWebhookEndpoint(request)
        shown = WebhookEndpoint.from_proto(response.endpoint)
        if response.signing_secret:
            return WebhookEndpointWithSecret(**shown.model_dump(), signing_secret=response.signing_secret)
        return shown

    async def delete(self, caller: Caller, endpoint_id: str) -> DeletedWebhookEndpoint:
        with caller.rpc_context():
            await self._stub.DeleteWebhookEndpoint(pb.DeleteWebhookEndpointRequest(endpoint_id=endpoint_id))
        return DeletedWebhookEndpoint(id=endpoint_id)

    async def list_attempts(
        self, caller: Caller, endpoint_id: str, *, after: str | None, limit: int | None
    ) -> WebhookDeliveryAttemptList:
        request = pb.ListWebhookAttemptsRequest(endpoint_id=endpoint_id, after=after or "", limit=limit or 0)
        with caller.rpc_context():
            response: pb.ListWebhookAttemptsResponse = await self._stub.ListWebhookAttempts(request)
        attempts = [WebhookDeliveryAttempt.from_proto(a) for a in response.attempts]
        return WebhookDeliveryAttemptList.of(attempts, response.has_more)
