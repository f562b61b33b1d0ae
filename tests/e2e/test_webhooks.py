"""Webhooks through the gateway with the official SDK: register, receive a signed event, verify it.

An endpoint registered with ``client.webhooks.create`` on a real receiver on loopback gets
``fine_tuning.job.cancelled`` for a job cancelled through the API, which
``client.webhooks.unwrap`` accepts with the secret only creation answered; the delivery
log shows the attempt; another organization can neither see the endpoint nor gets the event.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import openai
import pytest

from tests.e2e.conftest import KEY_B, Stack

pytestmark = pytest.mark.slow

DELIVERY_TIMEOUT_S = 60
EXAMPLES = [
    {"messages": [{"role": "user", "content": f"Hi {i}"}, {"role": "assistant", "content": f"Ahoy {i}"}]}
    for i in range(12)
]


class Receiver(ThreadingHTTPServer):
    """Records every POST (path, headers, body) and answers 200."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["content-length"]))
                receiver.received.append((self.path, dict(self.headers), body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def wait_for(self, path: str) -> tuple[dict[str, str], bytes]:
        deadline = time.monotonic() + DELIVERY_TIMEOUT_S
        while time.monotonic() < deadline:
            for got_path, headers, body in self.received:
                if got_path == path:
                    return headers, body
            time.sleep(0.2)
        raise AssertionError(f"no webhook reached {path} within {DELIVERY_TIMEOUT_S}s")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_a_cancelled_job_sends_an_event_the_sdk_verifies(stack: Stack, receiver: Receiver) -> None:
    client, other = stack.client(), stack.client(KEY_B)
    endpoint = client.webhooks.create(
        name="e2e", url=receiver.url + "/org-a", event_types=["fine_tuning.job.cancelled"]
    )
    assert endpoint.signing_secret.startswith("whsec_")
    theirs = other.webhooks.create(
        name="b", url=receiver.url + "/org-b", event_types=["fine_tuning.job.cancelled"]
    )

    content = "\n".join(json.dumps(example) for example in EXAMPLES).encode()
    uploaded = client.files.create(file=("hooks.jsonl", content), purpose="fine-tune")
    assert client.files.wait_for_processing(uploaded.id, poll_interval=0.5).status == "processed"
    job = client.fine_tuning.jobs.create(model="tailor-tiny", training_file=uploaded.id)
    client.fine_tuning.jobs.cancel(job.id)

    headers, body = receiver.wait_for("/org-a")
    event = client.webhooks.unwrap(body, headers, secret=endpoint.signing_secret)
    assert (event.type, event.data.id, event.object) == ("fine_tuning.job.cancelled", job.id, "event")
    with pytest.raises(openai.InvalidWebhookSignatureError):
        client.webhooks.verify_signature(body, headers, secret=theirs.signing_secret)

    # Only creation answered the secret.
    shown = client.webhooks.retrieve(endpoint.id)
    assert "signing_secret" not in shown.model_dump() and shown.signing_secret_hint
    assert endpoint.id in [listed.id for listed in client.webhooks.list()]
    log = client.get(f"/webhook_endpoints/{endpoint.id}/deliveries", cast_to=object)
    attempts = [(a["event_id"], a["status_code"], a["state"]) for a in log["data"]]
    assert attempts == [(event.id, 200, "delivered")]

    with pytest.raises(openai.NotFoundError):
        other.webhooks.retrieve(endpoint.id)
    assert [path for path, _, _ in receiver.received].count("/org-b") == 0
    assert client.webhooks.delete(endpoint.id).deleted
    other.webhooks.delete(theirs.id)
