"""The webhook event types Tailor sends, and the payload of one event (OpenAI's shape).

An event is ``{"id": "evt_...", "object": "event", "type": ..., "created_at": ...,
"data": {"id": <the object's id>}}``, as the openai SDK's ``UnwrapWebhookEvent`` parses
it. Kinds of object other than fine-tuning jobs (evals' ``eval.run.*``) add their types
to :data:`EVENT_TYPES` and write events through :func:`services.trainer.webhooks.outbox.record_event`.
"""

from __future__ import annotations

import json

JOB_SUCCEEDED = "fine_tuning.job.succeeded"
JOB_FAILED = "fine_tuning.job.failed"
JOB_CANCELLED = "fine_tuning.job.cancelled"
# An eval run's endings (OpenAI spells this one "canceled"); data.id is the run's id.
EVAL_RUN_SUCCEEDED = "eval.run.succeeded"
EVAL_RUN_FAILED = "eval.run.failed"
EVAL_RUN_CANCELED = "eval.run.canceled"

# Every type an endpoint may subscribe to, in the order they are documented.
EVENT_TYPES: tuple[str, ...] = (
    JOB_SUCCEEDED,
    JOB_FAILED,
    JOB_CANCELLED,
    EVAL_RUN_SUCCEEDED,
    EVAL_RUN_FAILED,
    EVAL_RUN_CANCELED,
)


def payload(event_id: str, event_type: str, created_at: int, object_id: str) -> bytes:
    """The body of every delivery of one event (the same bytes on each attempt)."""
    body = {
        "id": event_id,
        "object": "event",
        "type": event_type,
        "created_at": created_at,
        "data": {"id": object_id},
    }
    return json.dumps(body, separators=(",", ":")).encode()
