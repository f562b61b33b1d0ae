"""The gateway's answers over the fake services, against OpenAI's published schemas.

The whole surface is checked on the real stack (tests/e2e/test_openai_schemas.py); this
fast suite keeps the shapes that once broke those schemas: null ``expires_at`` and
``status_details`` on files, null ``first_id``/``last_id`` on empty pages, null ``data``
on message events, null ``tool_calls`` in a reply without calls, and a null
``system_fingerprint`` on every completion and chunk; and the shapes the fakes can give
exactly: tool calls (checked here only: the real stack would need a tool-calling
fine-tune, minutes on a loaded CPU) and log probabilities, -inf among them.
"""

from __future__ import annotations

import json
import re

from services.gateway.models.protocol import system_fingerprint
from tailor.trainer.v1 import model_registry_service_pb2 as registry_pb
from tests.support.openai_schemas import assert_matches
from tests.unit.gateway.conftest import Gateway
from tests.unit.gateway.fakes import BASE_MODEL
from tests.unit.gateway.test_chat import HELLO, sse_payloads
from tests.unit.gateway.test_chat_tool_calls import THREE_CHOICES, TOOLS, WEATHER
from tests.unit.gateway.test_files import MULTIPART_TYPE, jsonl, multipart
from tests.unit.gateway.test_logprobs_and_penalties import SCRIPT
from tests.unit.gateway.test_fine_tuning import training_file

FINGERPRINT = re.compile(r"fp_[0-9a-f]{10}")
FORM = {"content-type": MULTIPART_TYPE}


async def test_files_without_expiry_or_problems_and_in_error_match(gateway: Gateway) -> None:
    async with gateway.http() as http:
        empty = (await http.get("/v1/files")).json()
        assert (empty["data"], empty["first_id"], empty["last_id"]) == ([], "", "")
        assert_matches("listFiles", empty)

        parts = [("purpose", None, b"fine-tune"), ("file", "train.jsonl", jsonl())]
        created = await http.post("/v1/files", content=multipart(parts), headers=FORM)
        processed = created.json()
        assert processed["status"] == "processed"
        assert "expires_at" not in processed and "status_details" not in processed  # never null
        assert_matches("createFile", processed)

        parts = [("purpose", None, b"fine-tune"), ("file", "bad.jsonl", b"{not json\n")]
        created = await http.post("/v1/files", content=multipart(parts), headers=FORM)
        errored = (await http.get(f"/v1/files/{created.json()['id']}")).json()
        assert errored["status"] == "error" and errored["status_details"]
        assert_matches("retrieveFile", errored)

        full = (await http.get("/v1/files")).json()
        assert full["first_id"] == errored["id"] and full["last_id"] == processed["id"]
        assert_matches("listFiles", full)

        parts = [("purpose", None, b"evals"), ("file", "evals.jsonl", jsonl())]
        evals = await http.post("/v1/files", content=multipart(parts), headers=FORM)
        assert_matches("createFile", evals.json())


async def test_a_jobs_lifecycle_events_and_checkpoints_match(gateway: Gateway) -> None:
    file_id = await training_file(gateway)
    async with gateway.http() as http:
        empty = (await http.get("/v1/fine_tuning/jobs")).json()
        assert_matches("listPaginatedFineTuningJobs", empty)
        request = {"model": BASE_MODEL, "training_file": file_id}
        job = (await http.post("/v1/fine_tuning/jobs", json=request)).json()
        assert_matches("createFineTuningJob", job)
        url = f"/v1/fine_tuning/jobs/{job['id']}"
        assert_matches("pauseFineTuningJob", (await http.post(f"{url}/pause")).json())
        assert_matches("resumeFineTuningJob", (await http.post(f"{url}/resume")).json())
        gateway.fakes.trainer.succeed(job["id"], checkpoints=2)
        assert_matches("retrieveFineTuningJob", (await http.get(url)).json())
        events = (await http.get(f"{url}/events")).json()
        assert any(event["type"] == "message" for event in events["data"])
        assert_matches("listFineTuningEvents", events)
        checkpoints = (await http.get(f"{url}/checkpoints")).json()
        assert_matches("listFineTuningJobCheckpoints", checkpoints)


async def test_completions_and_every_chunk_carry_one_fingerprint(gateway: Gateway) -> None:
    fingerprints = set()
    async with gateway.http() as http:
        for path, operation, request in (
            ("/v1/chat/completions", "createChatCompletion", {"messages": HELLO}),
            ("/v1/completions", "createCompletion", {"prompt": "Ahoy"}),
        ):
            body = {"model": BASE_MODEL, **request}
            answer = (await http.post(path, json=body)).json()
            assert_matches(operation, answer)
            fingerprints.add(answer["system_fingerprint"])
            for options in ({}, {"stream_options": {"include_usage": True}}):
                streamed = await http.post(path, json={**body, "stream": True, **options})
                chunks = [json.loads(p) for p in sse_payloads(streamed.text)[:-1]]
                for chunk in chunks:
                    assert_matches(operation, chunk, stream=True)
                fingerprints |= {chunk["system_fingerprint"] for chunk in chunks}
    (fingerprint,) = fingerprints
    assert FINGERPRINT.fullmatch(fingerprint)


async def test_tool_calls_plain_and_streamed_match(gateway: Gateway) -> None:
    # choices that call tools, write text then call, and only write (the fake's script)
    gateway.fakes.inference.script = THREE_CHOICES
    body = {"model": BASE_MODEL, "messages": WEATHER, "tools": TOOLS, "n": 3}
    async with gateway.http() as http:
        answer = (await http.post("/v1/chat/completions", json=body)).json()
        finishes = [choice["finish_reason"] for choice in answer["choices"]]
        assert finishes == ["tool_calls", "tool_calls", "stop"]
        assert_matches("createChatCompletion", answer)
        streamed = await http.post("/v1/chat/completions", json={**body, "stream": True})
    for payload in sse_payloads(streamed.text)[:-1]:
        assert_matches("createChatCompletion", json.loads(payload), stream=True)


async def test_logprobs_plain_and_streamed_match(gateway: Gateway) -> None:
    # the fake replays tokens with their log probabilities, one of them -inf
    gateway.fakes.inference.script = SCRIPT
    async with gateway.http() as http:
        chat = {"messages": HELLO, "logprobs": True, "top_logprobs": 2}
        for path, operation, request in (
            ("/v1/chat/completions", "createChatCompletion", chat),
            ("/v1/completions", "createCompletion", {"prompt": "Ahoy", "logprobs": 2}),
        ):
            body = {"model": BASE_MODEL, **request}
            answer = await http.post(path, json=body)
            assert answer.status_code == 200 and answer.json()["choices"][0]["logprobs"], answer.text
            assert_matches(operation, answer.json())
            streamed = await http.post(path, json={**body, "stream": True})
            for payload in sse_payloads(streamed.text)[:-1]:
                assert_matches(operation, json.loads(payload), stream=True)


def test_the_fingerprint_changes_with_the_base_model_and_the_engine_only() -> None:
    base = registry_pb.Model(id=BASE_MODEL, kind=registry_pb.MODEL_KIND_BASE)
    tuned = registry_pb.Model(id=f"ft:{BASE_MODEL}:org-a:x:1", base_model=BASE_MODEL, adapter_uri="a/")
    other = registry_pb.Model(id="other-base", kind=registry_pb.MODEL_KIND_BASE)
    assert system_fingerprint(base, "hf") == system_fingerprint(tuned, "hf")
    variants = [(base, "hf"), (base, "vllm"), (other, "hf")]
    assert len({system_fingerprint(model, engine) for model, engine in variants}) == 3
