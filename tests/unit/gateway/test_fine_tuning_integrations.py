"""Integration requests: OpenAI's W&B as the SDK sends it, and Tailor's MLflow; accepted, passed to the
trainer, echoed back, or refused naming the field."""

from __future__ import annotations

import pytest

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




# Tailor's own integration type: an MLflow tracking server, the experiment, the run's name.
MLFLOW = {"tracking_uri": "http://mlflow.example.com:5000", "experiment_name": "tailor", "run_name": "first"}


async def test_an_mlflow_integration_is_accepted_sent_to_the_trainer_and_returned(gateway: Gateway) -> None:
    file_id = await training_file(gateway)
    integrations = [
        {"type": "wandb", "wandb": {"project": "p"}},
        {"type": "mlflow", "mlflow": MLFLOW},
        {"type": "mlflow", "mlflow": {"tracking_uri": "https://m.example.com", "experiment_name": "e"}},
    ]
    # the OpenAI SDK passes an item of a type it does not know through, and reads it back
    job = await gateway.sdk().fine_tuning.jobs.create(
        model=BASE_MODEL, training_file=file_id, integrations=integrations  # type: ignore[arg-type]
    )
    created = job.to_dict()
    async with gateway.http() as http:
        fetched = (await http.get(f"/v1/fine_tuning/jobs/{job.id}")).json()

    sent = gateway.fakes.trainer.requests[-1].integrations
    assert [item.type for item in sent] == ["wandb", "mlflow", "mlflow"]
    assert (sent[1].mlflow.tracking_uri, sent[1].mlflow.experiment_name, sent[1].mlflow.run_name) == (
        "http://mlflow.example.com:5000", "tailor", "first"
    )  # fmt: skip
    assert fetched["integrations"][1:] == [
        {"type": "mlflow", "mlflow": MLFLOW},
        {"type": "mlflow", "mlflow": {"tracking_uri": "https://m.example.com", "experiment_name": "e", "run_name": None}},
    ]  # fmt: skip
    assert created["integrations"] == fetched["integrations"]


@pytest.mark.parametrize(
    ("integration", "param", "code"),
    [
        ({"type": "comet", "comet": {}}, "integrations[0].type", "invalid_value"),
        ({"type": "mlflow"}, "integrations[0].mlflow", "missing_required_parameter"),
        ({"type": "mlflow", "wandb": {"project": "p"}, "mlflow": MLFLOW}, "integrations[0].wandb", "unknown_parameter"),
        ({"type": "wandb", "mlflow": MLFLOW}, "integrations[0].wandb", "missing_required_parameter"),
        ({"type": "mlflow", "mlflow": {"tracking_uri": "http://m"}}, "integrations[0].mlflow.experiment_name",
         "missing_required_parameter"),
        ({"type": "mlflow", "mlflow": {**MLFLOW, "tracking_uri": ""}}, "integrations[0].mlflow.tracking_uri",
         "invalid_value"),
        ({"type": "mlflow", "mlflow": {**MLFLOW, "run_name": "r" * 251}}, "integrations[0].mlflow.run_name",
         "invalid_value"),
        ({"type": "mlflow", "mlflow": {**MLFLOW, "tags": ["a"]}}, "integrations[0].mlflow.tags", "unknown_parameter"),
    ],
)  # fmt: skip
async def test_a_malformed_integration_is_a_400_naming_the_field(
    gateway: Gateway, integration: dict[str, object], param: str, code: str
) -> None:
    file_id = await training_file(gateway)
    body = {"model": BASE_MODEL, "training_file": file_id, "integrations": [integration]}
    async with gateway.http() as http:
        response = await http.post("/v1/fine_tuning/jobs", json=body)
    error = response.json()["error"]
    assert (response.status_code, error["param"], error["code"]) == (400, param, code)
