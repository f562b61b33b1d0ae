"""Every answer Tailor's operations give, on the real stack, validated against OpenAI's published schemas.

Each operation is driven once through the official SDK, reading the raw body
(``with_raw_response``, ``with_streaming_response`` for every SSE chunk), and each body is
checked with :func:`tests.support.openai_schemas.assert_matches` against the pinned copy
of OpenAI's OpenAPI document: files (a processed one and one in error), fine-tuning jobs
with their events and checkpoints, models, chat and text completions (plain, and streamed
with and without usage; with logprobs too), lists both empty and not, and the error
envelope. Tool calls are checked over the fake services
(tests/unit/gateway/test_openai_shapes.py): a tool-calling fine-tune takes minutes on a
loaded CPU.

One tiny fine-tune serves the module (10 examples, 2 epochs: a job with events, a
checkpoint per epoch and a results file, and a fine-tuned model). An empty page is the
page after a listing's last item.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import openai
import pytest

from tests.e2e.conftest import Stack
from tests.e2e.jobs import fine_tune
from tests.support.openai_schemas import assert_matches

pytestmark = pytest.mark.slow

BASE_MODEL = "tailor-tiny"
HELLO = [{"role": "user", "content": "Hi"}]
SHORT = {"max_tokens": 4}
USAGE = {"stream_options": {"include_usage": True}}
EXAMPLE = json.dumps(
    {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Ahoy!"}]}
)


@dataclass(frozen=True)
class Tuned:
    """The module's fine-tune: its job and the model it made."""

    job_id: str
    model: str


@pytest.fixture(scope="module")
def client(stack: Stack) -> openai.OpenAI:
    return stack.client(max_retries=0)


@pytest.fixture(scope="module")
def tuned(client: openai.OpenAI) -> Iterator[Tuned]:
    training = client.files.create(file=("shapes.jsonl", (EXAMPLE + "\n") * 10), purpose="fine-tune")
    hyperparameters = {"n_epochs": 2, "batch_size": 5}
    job = fine_tune(client, BASE_MODEL, training.id, suffix="shapes", seed=7, hyperparameters=hyperparameters)
    yield Tuned(job_id=job.id, model=job.fine_tuned_model or "")


def raw_json(raw: Any) -> Any:
    """The body of an SDK ``with_raw_response`` answer, as sent."""
    return json.loads(raw.text)


def sse_chunks(response: Any) -> list[Any]:
    """The JSON chunks of an SSE answer read through ``with_streaming_response``, up to ``[DONE]``."""
    payloads = [line.removeprefix("data: ") for line in response.iter_lines() if line]
    assert payloads[-1] == "[DONE]", payloads[-3:]
    return [json.loads(payload) for payload in payloads[:-1]]


def checked_page(operation: str, raw: Any) -> list[str]:
    """Checks a list answer; returns the ids it holds."""
    page = raw_json(raw)
    assert_matches(operation, page)
    return [item["id"] for item in page["data"]]


def test_files_processed_in_error_listed_and_deleted(client: openai.OpenAI) -> None:
    files = client.files.with_raw_response
    good = raw_json(files.create(file=("shapes.jsonl", (EXAMPLE + "\n") * 10), purpose="fine-tune"))
    assert_matches("createFile", good)
    processed = raw_json(files.retrieve(client.files.wait_for_processing(good["id"], poll_interval=0.5).id))
    assert processed["status"] == "processed"
    assert_matches("retrieveFile", processed)

    bad = client.files.create(file=("broken.jsonl", b'{"messages": [}\n' * 10), purpose="fine-tune")
    errored = raw_json(files.retrieve(client.files.wait_for_processing(bad.id, poll_interval=0.5).id))
    assert errored["status"] == "error"
    assert_matches("retrieveFile", errored)

    expiring = client.files.create(
        file=("notes.txt", b"note"),
        purpose="user_data",
        expires_after={"anchor": "created_at", "seconds": 3600},
    )
    assert_matches("retrieveFile", raw_json(files.retrieve(expiring.id)))
    assert_matches("downloadFile", files.content(good["id"]).text)

    assert len(checked_page("listFiles", files.list(limit=2))) == 2
    oldest = [file.id for file in client.files.list()][-1]
    assert checked_page("listFiles", files.list(after=oldest)) == []

    deleted = raw_json(files.delete(expiring.id))
    assert deleted["deleted"] is True
    assert_matches("deleteFile", deleted)


def test_fine_tuning_job_lifecycle_events_and_checkpoints(client: openai.OpenAI, tuned: Tuned) -> None:
    jobs = client.fine_tuning.jobs.with_raw_response
    succeeded = raw_json(jobs.retrieve(tuned.job_id))
    assert succeeded["status"] == "succeeded"
    assert_matches("retrieveFineTuningJob", succeeded)

    training = client.files.create(file=("paused.jsonl", (EXAMPLE + "\n") * 10), purpose="fine-tune")
    created = raw_json(
        jobs.create(
            model=BASE_MODEL, training_file=training.id, suffix="pause", hyperparameters={"n_epochs": 1}
        )
    )
    assert_matches("createFineTuningJob", created)
    for operation, act in (
        ("pauseFineTuningJob", jobs.pause),
        ("resumeFineTuningJob", jobs.resume),
        ("cancelFineTuningJob", jobs.cancel),  # cancelled: no CPU spent on training it
    ):
        assert_matches(operation, raw_json(act(created["id"])))

    listed = checked_page("listPaginatedFineTuningJobs", jobs.list(limit=2))
    assert listed[0] == created["id"]
    oldest = [job.id for job in client.fine_tuning.jobs.list(limit=100)][-1]
    assert checked_page("listPaginatedFineTuningJobs", jobs.list(after=oldest)) == []

    events = checked_page("listFineTuningEvents", jobs.list_events(tuned.job_id, limit=100))
    assert len(events) > 2
    assert checked_page("listFineTuningEvents", jobs.list_events(tuned.job_id, after=events[-1])) == []

    checkpoints = client.fine_tuning.jobs.checkpoints.with_raw_response
    names = checked_page("listFineTuningJobCheckpoints", checkpoints.list(tuned.job_id, limit=100))
    assert names
    assert checked_page("listFineTuningJobCheckpoints", checkpoints.list(tuned.job_id, after=names[-1])) == []


def test_models_listed_retrieved_and_deleted(client: openai.OpenAI, tuned: Tuned) -> None:
    models = client.models.with_raw_response
    listed = checked_page("listModels", models.list())
    assert BASE_MODEL in listed and tuned.model in listed
    for name in (BASE_MODEL, tuned.model):
        assert_matches("retrieveModel", raw_json(models.retrieve(name)))
    checkpoint = next(name for name in listed if name.startswith(f"{tuned.model}:ckpt-step-"))
    deleted = raw_json(models.delete(checkpoint))
    assert deleted["deleted"] is True
    assert_matches("deleteModel", deleted)


def test_chat_answers_plain_and_streamed(client: openai.OpenAI, tuned: Tuned) -> None:
    chat = client.chat.completions
    fingerprints = set()
    for model in (BASE_MODEL, tuned.model):
        answer = raw_json(chat.with_raw_response.create(model=model, messages=HELLO, n=2, **SHORT))
        assert_matches("createChatCompletion", answer)
        fingerprints.add(answer["system_fingerprint"])
    assert len(fingerprints) == 1  # one base model on one engine: one backend configuration
    logprobs = {"logprobs": True, "top_logprobs": 2}
    answer = raw_json(chat.with_raw_response.create(model=tuned.model, messages=HELLO, **SHORT, **logprobs))
    assert answer["choices"][0]["logprobs"]["content"], answer
    assert_matches("createChatCompletion", answer)

    for options in ({}, USAGE, logprobs):
        with chat.with_streaming_response.create(
            model=tuned.model, messages=HELLO, stream=True, n=2, **SHORT, **options
        ) as response:
            chunks = sse_chunks(response)
        for chunk in chunks:
            assert_matches("createChatCompletion", chunk, stream=True)
        assert {chunk["system_fingerprint"] for chunk in chunks} == fingerprints
        assert ("usage" in chunks[-1] and chunks[-1]["choices"] == []) == (options is USAGE)


def test_text_completions_plain_and_streamed(client: openai.OpenAI, tuned: Tuned) -> None:
    completions = client.completions
    answer = raw_json(
        completions.with_raw_response.create(model=tuned.model, prompt="Ahoy", echo=True, **SHORT)
    )
    assert_matches("createCompletion", answer)
    answer = raw_json(
        completions.with_raw_response.create(model=BASE_MODEL, prompt="Ahoy", logprobs=2, **SHORT)
    )
    assert answer["choices"][0]["logprobs"]["tokens"], answer
    assert_matches("createCompletion", answer)
    for options in ({}, USAGE, {"logprobs": 2}):
        with completions.with_streaming_response.create(
            model=BASE_MODEL, prompt="Ahoy", stream=True, n=2, **SHORT, **options
        ) as response:
            chunks = sse_chunks(response)
        for chunk in chunks:
            assert_matches("createCompletion", chunk, stream=True)


@pytest.mark.parametrize(
    "attempt",
    [
        pytest.param(lambda c: c.files.retrieve("file-doesnotexist"), id="404"),
        pytest.param(
            lambda c: c.chat.completions.create(model=BASE_MODEL, messages=HELLO, temperature=5), id="400"
        ),
        pytest.param(
            lambda c: c.with_options(api_key="sk-not-a-real-key").models.list(), id="401"
        ),
        pytest.param(lambda c: c.fine_tuning.jobs.cancel("ftjob-doesnotexist"), id="404-job"),
    ],
)
def test_errors_are_openais_envelope(client: openai.OpenAI, attempt: Any) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        attempt(client)
    assert_matches("ErrorResponse", caught.value.response.json())
