"""Webhooks: signed notifications of job outcomes, delivered at least once to each organization's endpoints.

:mod:`.events` names the event types; :mod:`.signing` signs a delivery as Standard Webhooks
(what ``client.webhooks.unwrap`` of the openai SDK verifies); :mod:`.outbox` writes an
event in the transaction that changes a job's status; :mod:`.endpoints` manages the
endpoints; :mod:`.delivery` sends what is due, with retries. See docs/webhooks.md.
"""
