"""The whole product flow through the official SDK: upload, fine-tune tailor-tiny, inspect, chat, delete.

One job is trained for the module (about 20 s on a 2-core CPU: 12 short examples, 2
epochs); the tests then look at it the way a user's script would. They run in file order,
and the last one deletes the model.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import openai
import pytest
from openai.types.fine_tuning import FineTuningJob

from tests.e2e.conftest import KEY_B, Stack
from tests.e2e.jobs import TRAINING_TIMEOUT_S, wait_until_succeeded

pytestmark = pytest.mark.slow

BASE_MODEL = "tailor-tiny"
EXAMPLES = [
    {
        "messages": [
            {"role": "system", "content": "You are a pirate."},
            {"role": "user", "content": f"Greet sailor number {i}."},
            {"role": "assistant", "content": f"Ahoy, sailor {i}! Welcome aboard."},
        ]
    }
    for i in range(12)
]
SHORT = {"max_tokens": 8}


@dataclass
class Trained:
    job: FineTuningJob
    training_file: str


@pytest.fixture(scope="module")
def trained(stack: Stack) -> Iterator[Trained]:
    client = stack.client()
    content = "\n".join(json.dumps(example) for example in EXAMPLES).encode()
    uploaded = client.files.create(file=("pirate.jsonl", content), purpose="fine-tune")
    assert client.files.wait_for_processing(uploaded.id, poll_interval=0.5).status == "processed"
    job = client.fine_tuning.jobs.create(
        model=BASE_MODEL,
        training_file=uploaded.id,
        suffix="pirate",
        seed=1234,
        hyperparameters={"n_epochs": 2, "batch_size": 4, "learning_rate_multiplier": 2.0},
    )
    assert job.status in ("validating_files", "queued")
    job = wait_until_succeeded(client, job)
    yield Trained(job=job, training_file=uploaded.id)


def test_the_job_succeeds_with_openais_shape(trained: Trained) -> None:
    job = trained.job
    raw = job.to_dict()
    assert job.id.startswith("ftjob-") and job.object == "fine_tuning.job"
    assert job.fine_tuned_model is not None
    assert job.fine_tuned_model.startswith(f"ft:{BASE_MODEL}:org-a:pirate:")
    assert job.seed == 1234 and raw["user_provided_suffix"] == "pirate"
    assert job.hyperparameters.n_epochs == 2 and job.hyperparameters.batch_size == 4
    assert raw["method"]["type"] == "supervised"
    assert job.error is None and job.organization_id == "org-a"
    assert isinstance(job.finished_at, int) and job.finished_at >= job.created_at
    assert isinstance(job.trained_tokens, int) and job.trained_tokens > 0
    assert job.result_files and job.training_file == trained.training_file


def test_events_are_newest_first_with_metrics(stack: Stack, trained: Trained) -> None:
    events = stack.client().fine_tuning.jobs.list_events(trained.job.id, limit=100).data
    assert events and all(e.object == "fine_tuning.job.event" for e in events)
    assert [e.created_at for e in events] == sorted((e.created_at for e in events), reverse=True)
    assert "Created fine-tuning job" in events[-1].message
    metrics = [e for e in events if e.type == "metrics"]
    assert metrics and isinstance(metrics[0].data, dict) and "train_loss" in metrics[0].data


def test_checkpoints_are_listed_and_servable(stack: Stack, trained: Trained) -> None:
    client = stack.client()
    checkpoints = client.fine_tuning.jobs.checkpoints.list(trained.job.id).data
    assert checkpoints
    assert [c.step_number for c in checkpoints] == sorted((c.step_number for c in checkpoints), reverse=True)
    name = checkpoints[-1].fine_tuned_model_checkpoint
    assert name.startswith(f"{trained.job.fine_tuned_model}:ckpt-step-")
    answer = client.chat.completions.create(model=name, messages=[{"role": "user", "content": "Hi"}], **SHORT)
    assert answer.model == name and answer.choices[0].finish_reason in ("stop", "length")
    streamed = client.chat.completions.create(
        model=name, messages=[{"role": "user", "content": "Hi"}], stream=True, **SHORT
    )
    assert [c for c in streamed][0].choices[0].delta.role == "assistant"


def test_the_results_file_is_a_csv(stack: Stack, trained: Trained) -> None:
    client = stack.client()
    results = client.files.retrieve(trained.job.result_files[0])
    assert results.purpose == "fine-tune-results"
    assert client.files.content(results.id).text.startswith("step,train_loss")


def test_chat_with_the_fine_tuned_model_plain_and_streamed(stack: Stack, trained: Trained) -> None:
    client = stack.client()
    model = trained.job.fine_tuned_model
    assert model is not None
    messages = [
        {"role": "system", "content": "You are a pirate."},
        {"role": "user", "content": "Greet sailor 3."},
    ]
    answer = client.chat.completions.create(model=model, messages=messages, n=2, seed=5, **SHORT)  # type: ignore[arg-type]
    assert answer.object == "chat.completion" and len(answer.choices) == 2
    assert answer.usage is not None
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens
    chunks = list(
        client.chat.completions.create(
            model=model,
            messages=messages,  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
            **SHORT,
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    assert sum(1 for c in chunks for choice in c.choices if choice.finish_reason) == 1
    assert chunks[-1].choices == [] and chunks[-1].usage is not None


def test_models_lists_the_base_model_the_fine_tune_and_its_checkpoints(
    stack: Stack, trained: Trained
) -> None:
    client = stack.client()
    ids = [m.id for m in client.models.list().data]
    assert BASE_MODEL in ids and trained.job.fine_tuned_model in ids
    assert any(i.startswith(f"{trained.job.fine_tuned_model}:ckpt-step-") for i in ids)
    model = client.models.retrieve(trained.job.fine_tuned_model or "")
    assert model.owned_by == "org-a" and model.object == "model" and isinstance(model.created, int)


def test_another_organization_sees_none_of_it(stack: Stack, trained: Trained) -> None:
    other = stack.client(KEY_B)
    job = trained.job
    model = job.fine_tuned_model or ""
    checkpoint = stack.client().fine_tuning.jobs.checkpoints.list(job.id).data[0].fine_tuned_model_checkpoint
    attempts = [
        lambda: other.files.retrieve(job.training_file),
        lambda: other.files.content(job.result_files[0]),
        lambda: other.fine_tuning.jobs.retrieve(job.id),
        lambda: other.fine_tuning.jobs.list_events(job.id),
        lambda: other.fine_tuning.jobs.checkpoints.list(job.id),
        lambda: other.fine_tuning.jobs.cancel(job.id),
        lambda: other.models.retrieve(model),
        lambda: other.models.retrieve(checkpoint),
        lambda: other.models.delete(model),
    ]
    for attempt in attempts:
        with pytest.raises(openai.NotFoundError):
            attempt()
    with pytest.raises(openai.NotFoundError) as caught:
        other.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}], **SHORT)
    assert caught.value.code == "model_not_found"
    assert job.id not in [j.id for j in other.fine_tuning.jobs.list().data]
    assert model not in [m.id for m in other.models.list().data]
    assert job.training_file not in [f.id for f in other.files.list().data]


def test_sse_framing_on_the_wire(stack: Stack, trained: Trained) -> None:
    request = {
        "model": trained.job.fine_tuned_model,
        "messages": [{"role": "user", "content": "Hi"}],
        "stream": True,
    }
    response = httpx.post(
        f"{stack.url}/v1/chat/completions",
        json={**request, **SHORT},
        headers={"Authorization": f"Bearer {stack.client().api_key}"},
        timeout=120,
    )
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-request-id"]
    events = response.text.split("\n\n")
    assert events[-1] == "" and events[-2] == "data: [DONE]"
    assert all(event.startswith("data: {") for event in events[:-2])


def test_deleting_the_model_makes_it_404_everywhere(stack: Stack, trained: Trained) -> None:
    client = stack.client()
    model = trained.job.fine_tuned_model or ""
    deleted = client.models.delete(model)
    assert (deleted.id, deleted.deleted) == (model, True)
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve(model)
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}], **SHORT)
    assert caught.value.code == "model_not_found"
    assert model not in [m.id for m in client.models.list().data]
