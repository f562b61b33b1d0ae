"""/v1/fine_tuning/jobs as the SDK sees it: OpenAI's job shape, lifecycle calls, pages, isolation."""

from __future__ import annotations

import json

import openai
import pytest

from services.gateway.auth import Caller
from services.gateway.fine_tuning.protocol import CreateFineTuningJobRequest
from services.gateway.fine_tuning.serving import OpenAIServingFineTuning
from tailor.trainer.v1 import job_pb2
from tests.unit.gateway.conftest import KEY_B, Gateway
from tests.unit.gateway.fakes import BASE_MODEL
from tests.unit.gateway.test_files import EXAMPLE, jsonl


async def training_file(gateway: Gateway, key: str | None = None) -> str:
    client = gateway.sdk(key) if key else gateway.sdk()
    return (await client.files.create(file=("train.jsonl", jsonl()), purpose="fine-tune")).id


async def test_create_returns_openais_job_object(gateway: Gateway) -> None:
    file_id = await training_file(gateway)
    job = await gateway.sdk().fine_tuning.jobs.create(
        model=BASE_MODEL,
        training_file=file_id,
        suffix="pirate",
        seed=7,
        hyperparameters={"n_epochs": 2, "learning_rate_multiplier": 0.5},
        metadata={"team": "docs"},
    )
    raw = job.to_dict()
    assert job.id.startswith("ftjob-") and job.object == "fine_tuning.job"
    assert job.status == "validating_files"
    assert job.model == BASE_MODEL and job.training_file == file_id and job.validation_file is None
    assert job.seed == 7 and isinstance(job.created_at, int)
    assert job.organization_id == "org-a"
    assert job.error is None and job.fine_tuned_model is None and job.finished_at is None
    assert job.trained_tokens is None and job.result_files == [] and job.estimated_finish is None
    assert raw["hyperparameters"] == {"batch_size": "auto", "learning_rate_multiplier": 0.5, "n_epochs": 2}
    assert raw["method"] == {
        "type": "supervised",
        "supervised": {
            "hyperparameters": {"batch_size": "auto", "learning_rate_multiplier": 0.5, "n_epochs": 2}
        },
    }
    assert raw["user_provided_suffix"] == "pirate"
    assert job.metadata == {"team": "docs"}

    sent = gateway.fakes.trainer.requests[-1]
    assert sent.method.type == job_pb2.METHOD_TYPE_SUPERVISED
    assert sent.method.hyperparameters.n_epochs == 2
    assert not sent.method.hyperparameters.HasField("batch_size")  # "auto" is an absent field
    assert sent.suffix == "pirate" and sent.seed == 7


async def test_method_dpo_with_beta_and_tailor_lora_extensions(gateway: Gateway) -> None:
    file_id = await training_file(gateway)
    job = await gateway.sdk().fine_tuning.jobs.create(
        model=BASE_MODEL,
        training_file=file_id,
        method={"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.1, "n_epochs": "auto", "lora_rank": 8}}},  # type: ignore[typeddict-unknown-key]
    )
    assert job.to_dict()["method"] == {
        "type": "dpo",
        "dpo": {
            "hyperparameters": {
                "batch_size": "auto",
                "learning_rate_multiplier": "auto",
                "n_epochs": "auto",
                "beta": 0.1,
                "lora_rank": 8,
            }
        },
    }
    sent = gateway.fakes.trainer.requests[-1].method
    assert sent.type == job_pb2.METHOD_TYPE_DPO and sent.hyperparameters.beta == 0.1


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"method": {"type": "reinforcement"}}, "method.type"),
        (
            {
                "hyperparameters": {"n_epochs": 1},
                "method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2}}},
            },
            "hyperparameters",
        ),
        ({"integrations": [{"type": "comet", "wandb": {"project": "p"}}]}, "integrations[0].type"),
        ({"integrations": [{"type": "wandb", "wandb": {"entity": "team"}}]}, "integrations[0].wandb.project"),
        ({"integrations": [{"type": "wandb"}]}, "integrations[0].wandb"),
        ({"hyperparameters": {"n_epochs": "many"}}, "hyperparameters.n_epochs"),
        ({"suffix": "x" * 65}, "suffix"),
        ({"seed": -1}, "seed"),
        ({"unknown_field": 1}, "unknown_field"),
        ({"model": None}, "model"),
    ],
)
async def test_invalid_requests_are_400_naming_the_field(gateway: Gateway, body: dict, param: str) -> None:
    file_id = await training_file(gateway)
    payload = {"model": BASE_MODEL, "training_file": file_id, **body}
    async with gateway.http() as http:
        response = await http.post("/v1/fine_tuning/jobs", json=payload)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"].startswith(param), error


async def test_a_training_file_with_bad_json_on_line_3_is_a_400_naming_line_3(gateway: Gateway) -> None:
    client = gateway.sdk()
    bad = EXAMPLE + b"\n" + EXAMPLE + b'\n{"messages": [\n' + (EXAMPLE + b"\n") * 8
    uploaded = await client.files.create(file=("bad.jsonl", bad), purpose="fine-tune")
    with pytest.raises(openai.BadRequestError) as caught:
        await client.fine_tuning.jobs.create(model=BASE_MODEL, training_file=uploaded.id)
    assert "line 3" in caught.value.message
    assert caught.value.param == "training_file"
    assert caught.value.code == "invalid_training_file"


async def test_a_retried_create_returns_the_same_job(gateway: Gateway) -> None:
    client = gateway.sdk()
    file_id = await training_file(gateway)
    first = await client.fine_tuning.jobs.create(model=BASE_MODEL, training_file=file_id, suffix="a")
    again = await client.fine_tuning.jobs.create(model=BASE_MODEL, training_file=file_id, suffix="a")
    different = await client.fine_tuning.jobs.create(model=BASE_MODEL, training_file=file_id, suffix="b")
    assert again.id == first.id and different.id != first.id
    keyed = await client.fine_tuning.jobs.create(
        model=BASE_MODEL, training_file=file_id, suffix="a", extra_headers={"Idempotency-Key": "mine-1"}
    )
    assert keyed.id != first.id
    assert gateway.fakes.trainer.requests[-1].idempotency_key == "client:mine-1"


class _NoUpstreams:
    jobs = None


def test_the_derived_key_depends_on_body_organization_and_window(gateway: Gateway) -> None:
    now = [1_000_000.0]
    serving = OpenAIServingFineTuning(_NoUpstreams(), gateway.settings, clock=lambda: now[0])  # type: ignore[arg-type]
    caller_a, caller_b = Caller("org-a", "r1"), Caller("org-b", "r2")

    def key(caller: Caller, **body: object) -> str:
        request = CreateFineTuningJobRequest.model_validate(
            {"model": BASE_MODEL, "training_file": "file-1", **body}
        )
        return serving.idempotency_key(caller, request, None)

    first = key(caller_a, seed=1, suffix="x")
    assert first.startswith("derived:")
    assert first == key(caller_a, suffix="x", seed=1)  # the same body in another key order
    assert first != key(caller_a, seed=2, suffix="x")
    assert first != key(caller_b, seed=1, suffix="x")
    now[0] += gateway.settings.gateway_idempotency_window_s
    assert first != key(caller_a, seed=1, suffix="x")


async def test_lifecycle_calls_events_and_checkpoints(gateway: Gateway) -> None:
    client = gateway.sdk()
    file_id = await training_file(gateway)
    job = await client.fine_tuning.jobs.create(model=BASE_MODEL, training_file=file_id, suffix="s")

    paused = await client.fine_tuning.jobs.pause(job.id)
    assert paused.status == "paused"
    assert (await client.fine_tuning.jobs.resume(job.id)).status == "queued"

    gateway.fakes.trainer.succeed(job.id, checkpoints=2)
    done = await client.fine_tuning.jobs.retrieve(job.id)
    assert done.status == "succeeded"
    assert done.fine_tuned_model and done.fine_tuned_model.startswith(f"ft:{BASE_MODEL}:org-a:s:")
    assert isinstance(done.finished_at, int) and done.trained_tokens == 1234
    assert done.hyperparameters.n_epochs == 3  # resolved from "auto"
    assert len(done.result_files) == 1
    assert (await client.files.content(done.result_files[0])).text.startswith("step,")

    events = await client.fine_tuning.jobs.list_events(job.id, limit=50)
    assert events.data[0].message == "The job has successfully completed"  # newest first
    assert events.data[-1].message.startswith("Created fine-tuning job")
    assert all(e.object == "fine_tuning.job.event" and e.level == "info" for e in events.data)
    metrics = [e for e in events.data if e.type == "metrics"]
    assert metrics and metrics[0].data == {"step": 20, "total_steps": 20, "train_loss": 0.5}
    assert all(e.data == {} for e in events.data if e.type == "message")

    checkpoints = await client.fine_tuning.jobs.checkpoints.list(job.id)
    assert [c.step_number for c in checkpoints.data] == [20, 10]
    first = checkpoints.data[0]
    assert first.object == "fine_tuning.job.checkpoint" and first.fine_tuning_job_id == job.id
    assert first.fine_tuned_model_checkpoint == f"{done.fine_tuned_model}:ckpt-step-20"
    assert first.metrics.train_loss == 0.5
    assert checkpoints.to_dict()["first_id"] == first.id

    with pytest.raises(openai.BadRequestError) as caught:  # a finished job: 400, never a retried 409
        await client.fine_tuning.jobs.cancel(job.id)
    assert "finished" in caught.value.message


async def test_cancel_returns_the_cancelled_job(gateway: Gateway) -> None:
    client = gateway.sdk()
    job = await client.fine_tuning.jobs.create(model=BASE_MODEL, training_file=await training_file(gateway))
    cancelled = await client.fine_tuning.jobs.cancel(job.id)
    assert cancelled.status == "cancelled" and cancelled.id == job.id


async def test_list_is_newest_first_with_pages_and_metadata_filter(gateway: Gateway) -> None:
    client = gateway.sdk()
    file_id = await training_file(gateway)
    ids = [
        (
            await client.fine_tuning.jobs.create(
                model=BASE_MODEL, training_file=file_id, suffix=f"j{i}", metadata={"n": str(i % 2)}
            )
        ).id
        for i in range(5)
    ]
    page = await client.fine_tuning.jobs.list(limit=2)
    assert [j.id for j in page.data] == ids[::-1][:2] and page.has_more is True
    assert [j.id async for j in client.fine_tuning.jobs.list(limit=2)] == ids[::-1]
    odd = await client.fine_tuning.jobs.list(metadata={"n": "1"})
    assert [j.id for j in odd.data] == [ids[3], ids[1]]
    huge = await client.fine_tuning.jobs.list(
        limit=1000
    )  # more than the trainer's page: capped, still complete
    assert len(huge.data) == 5 and huge.has_more is False


async def test_another_organizations_job_is_missing_everywhere(gateway: Gateway) -> None:
    job = await gateway.sdk().fine_tuning.jobs.create(
        model=BASE_MODEL, training_file=await training_file(gateway)
    )
    jobs = gateway.sdk(KEY_B).fine_tuning.jobs
    for attempt in (
        jobs.retrieve,
        jobs.cancel,
        jobs.pause,
        jobs.resume,
        jobs.list_events,
        jobs.checkpoints.list,
    ):
        with pytest.raises(openai.NotFoundError) as caught:
            await attempt(job.id)
        assert job.id in caught.value.message
    assert (await jobs.list()).data == []
    async with gateway.http(KEY_B) as http:
        response = await http.get(f"/v1/fine_tuning/jobs/{job.id}")
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert json.dumps(body).count("org-a") == 0
