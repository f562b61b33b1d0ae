"""Only the gateway may manage webhook endpoints: they hold signing secrets and choose where the trainer sends."""

from __future__ import annotations

import pytest

from services.common.internal_auth.policy import Refused, audience_of_method, authorize
from services.common.internal_auth.tokens import Principal
from tailor.trainer.v1 import webhook_service_pb2

METHODS = [
    f"/tailor.trainer.v1.WebhookService/{method.name}"
    for method in webhook_service_pb2.DESCRIPTOR.services_by_name["WebhookService"].methods
]


@pytest.mark.parametrize("method", METHODS)
def test_the_gateway_may_call_webhook_service_and_no_one_else(method: str) -> None:
    assert audience_of_method(method) == "trainer"
    authorize(Principal("gateway", "org-a"), method)
    for caller in (
        Principal("trainer", "org-a"),
        Principal("inference", "org-a"),
        Principal("dataset", "org-a"),
        Principal("trainer", "org-a", worker=True, job_id="ftjob-1", attempt_id="a"),
    ):
        with pytest.raises(Refused):
            authorize(caller, method)
