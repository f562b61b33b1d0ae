"""WebhookService from memory, for the gateway's unit tests: the trainer's own checks, no records.

Input is checked by the trainer's functions (URL, name, event types), so the gateway's
answers to bad input are the real ones; deliveries are not made (the delivery log is empty).
"""

from __future__ import annotations

import tailor.trainer.v1.webhook_service_pb2 as pb
import tailor.trainer.v1.webhook_service_pb2_grpc as webhook_grpc
from services.common.tenancy import current_organization
from services.trainer.jobs import page_size
from services.trainer.webhooks.endpoints import _check_event_types, _check_name, endpoint_not_found
from services.trainer.webhooks.signing import new_secret, secret_hint
from services.trainer.webhooks.targets import check_url


class FakeWebhooks(webhook_grpc.WebhookServiceServicer):
    def __init__(self) -> None:
        self.endpoints: dict[tuple[str, str], pb.WebhookEndpoint] = {}

    def _own(self, endpoint_id: str) -> pb.WebhookEndpoint:
        endpoint = self.endpoints.get((current_organization(), endpoint_id))
        if endpoint is None:
            raise endpoint_not_found(endpoint_id)
        return endpoint

    async def CreateWebhookEndpoint(self, request, context):  # type: ignore[no-untyped-def]
        secret = new_secret()
        endpoint = pb.WebhookEndpoint(
            id=f"we_{len(self.endpoints)}",
            name=_check_name(request.name),
            url=check_url(request.url, []),
            event_types=_check_event_types(list(request.event_types)),
            signing_secret_hint=secret_hint(secret),
            delivery_stats=pb.WebhookDeliveryStats(),
        )
        self.endpoints[(current_organization(), endpoint.id)] = endpoint
        return pb.CreateWebhookEndpointResponse(endpoint=endpoint, signing_secret=secret)

    async def GetWebhookEndpoint(self, request, context):  # type: ignore[no-untyped-def]
        return pb.GetWebhookEndpointResponse(endpoint=self._own(request.endpoint_id))

    async def ListWebhookEndpoints(self, request, context):  # type: ignore[no-untyped-def]
        page_size(request.limit, 20)
        if request.after:
            self._own(request.after)
        mine = [e for (org, _), e in self.endpoints.items() if org == current_organization()]
        return pb.ListWebhookEndpointsResponse(endpoints=mine[::-1], has_more=False)

    async def UpdateWebhookEndpoint(self, request, context):  # type: ignore[no-untyped-def]
        endpoint = self._own(request.endpoint_id)
        if request.HasField("name"):
            endpoint.name = _check_name(request.name)
        if request.HasField("url"):
            endpoint.url = check_url(request.url, [])
        if request.set_event_types:
            endpoint.event_types[:] = _check_event_types(list(request.event_types))
        secret = new_secret() if request.rotate_secret else ""
        return pb.UpdateWebhookEndpointResponse(endpoint=endpoint, signing_secret=secret)

    async def DeleteWebhookEndpoint(self, request, context):  # type: ignore[no-untyped-def]
        self._own(request.endpoint_id)
        del self.endpoints[(current_organization(), request.endpoint_id)]
        return pb.DeleteWebhookEndpointResponse(endpoint_id=request.endpoint_id)

    async def ListWebhookAttempts(self, request, context):  # type: ignore[no-untyped-def]
        self._own(request.endpoint_id)
        page_size(request.limit, 20)
        return pb.ListWebhookAttemptsResponse()
