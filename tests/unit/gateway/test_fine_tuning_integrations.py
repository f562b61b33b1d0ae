"""OpenAI's W&B integration request as the SDK sends it: accepted, passed to the trainer, echoed back."""

from __future__ import annotations

from tests.support.openai_schemas import assert_matches
from tests.unit.gateway.conftest import Gateway
from tests.unit.gateway.fakes import BASE_MODEL
from tests.unit.gateway.test_fine_tuning import training_file

# OpenAI's own example request (its fine-tuning reference), with every optional field set.
WANDB = {"project": "my-wandb-project", "entity": "my-team", "name": "ft-run-display-name", "tags": ["first"]}


async def test_a_wandb_integration_is_accepted_sent_to_the_trainer_and_returned(gateway: Gateway) -> None:
    client = gateway.sdk()
    file_id = await training_file(gateway)
    job = await client.fine_tuning.jobs.create(
        model=BASE_MODEL, training_file=file_id, integrations=[{"type": "wandb", "wandb": WANDB}]
    )

    assert job.integrations is not None and len(job.integrations) == 1
    assert job.integrations[0].type == "wandb" and job.integrations[0].wandb.model_dump() == WANDB
    (sent,) = gateway.fakes.trainer.requests[-1].integrations
    assert (sent.type, sent.wandb.project, sent.wandb.entity, list(sent.wandb.tags)) == (
        "wandb", "my-wandb-project", "my-team", ["first"]
    )  # fmt: skip
    async with gateway.http() as http:
        fetched = (await http.get(f"/v1/fine_tuning/jobs/{job.id}")).json()
    assert fetched["integrations"] == [{"type": "wandb", "wandb": WANDB}]
    assert_matches("retrieveFineTuningJob", fetched)


async def test_only_the_project_is_required_and_absent_fields_read_as_null(gateway: Gateway) -> None:
    client = gateway.sdk()
    file_id = await training_file(gateway)
    job = await client.fine_tuning.jobs.create(
        model=BASE_MODEL, training_file=file_id, integrations=[{"type": "wandb", "wandb": {"project": "p"}}]
    )
    assert job.to_dict()["integrations"] == [
        {"type": "wandb", "wandb": {"project": "p", "entity": None, "name": None, "tags": []}}
    ]


async def test_a_job_without_integrations_has_an_empty_list_and_the_untyped_fields_null(
    gateway: Gateway,
) -> None:
    file_id = await training_file(gateway)
    async with gateway.http() as http:
        response = await http.post("/v1/fine_tuning/jobs", json={"model": BASE_MODEL, "training_file": file_id})
    raw = response.json()
    assert_matches("createFineTuningJob", raw)
    assert raw["integrations"] == []
    assert raw["usage_metrics"] is None and raw["user_provided_suffix"] is None


async def test_more_than_five_integrations_are_a_400_naming_integrations(gateway: Gateway) -> None:
    file_id = await training_file(gateway)
    body = {
        "model": BASE_MODEL,
        "training_file": file_id,
        "integrations": [{"type": "wandb", "wandb": {"project": f"p{i}"}} for i in range(6)],
    }
    async with gateway.http() as http:
        response = await http.post("/v1/fine_tuning/jobs", json=body)
    assert response.status_code == 400 and response.json()["error"]["param"] == "integrations"


