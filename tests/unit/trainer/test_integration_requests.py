"""The trainer's own check of a job's integrations: OpenAI's rules for W&B, Tailor's for MLflow, the
offending item named."""

from __future__ import annotations

import pytest

from services.common.errors import InvalidArgument
from services.trainer.job_requests import check_request
from tailor.trainer.v1 import job_pb2
from tailor.trainer.v1 import trainer_service_pb2 as trainer_pb2


def wandb(project: str = "p", type_: str = "wandb") -> job_pb2.Integration:
    return job_pb2.Integration(type=type_, wandb=job_pb2.WandbIntegration(project=project, tags=["a"]))


def mlflow(
    tracking_uri: str = "http://127.0.0.1:5000", experiment_name: str = "e", run_name: str = ""
) -> job_pb2.Integration:
    return job_pb2.Integration(
        type="mlflow",
        mlflow=job_pb2.MlflowIntegration(
            tracking_uri=tracking_uri, experiment_name=experiment_name, run_name=run_name
        ),
    )


def request(*integrations: job_pb2.Integration) -> trainer_pb2.CreateJobRequest:
    return trainer_pb2.CreateJobRequest(
        model="tailor-tiny", training_file="file-1", integrations=integrations
    )


def refusal(refused: trainer_pb2.CreateJobRequest, allowed: list[str] | None = None) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as caught:
        check_request(refused, max_lora_rank=64, mlflow_allowed_targets=allowed or [])
    return caught.value


def test_up_to_five_wandb_integrations_with_a_project_are_accepted() -> None:
    check_request(request(*[wandb(f"p{i}") for i in range(5)]), max_lora_rank=64)


def test_mlflow_integrations_with_an_http_server_and_an_experiment_are_accepted() -> None:
    check_request(
        request(wandb(), mlflow(), mlflow("https://mlflow.example.com/prefix", "exp", "run-1")),
        max_lora_rank=64,
    )


@pytest.mark.parametrize(
    ("refused", "param"),
    [
        (request(wandb(), wandb(type_="comet")), "integrations[1].type"),
        (request(wandb(project="")), "integrations[0].wandb.project"),
        (request(*[wandb() for _ in range(6)]), "integrations"),
        (request(wandb(), mlflow(tracking_uri="")), "integrations[1].mlflow.tracking_uri"),
        (request(mlflow(experiment_name="")), "integrations[0].mlflow.experiment_name"),
        (request(mlflow(experiment_name="e" * 257)), "integrations[0].mlflow.experiment_name"),
        (request(mlflow(run_name="r" * 251)), "integrations[0].mlflow.run_name"),
    ],
)
def test_a_bad_integration_is_refused_naming_it(refused: trainer_pb2.CreateJobRequest, param: str) -> None:
    assert refusal(refused).param == param


@pytest.mark.parametrize(
    "uri",
    [
        "file:///var/lib/tailor/mlruns",  # would write on the worker's disk
        "sqlite:///mlflow.db",
        "databricks",
        "http://user:secret@mlflow.example.com",
        "http://mlflow.example.com:port",
        "http://" + "a" * 2048,
    ],
)
def test_an_mlflow_tracking_uri_that_is_not_a_plain_http_server_is_refused(uri: str) -> None:
    error = refusal(request(mlflow(tracking_uri=uri)))
    assert error.param == "integrations[0].mlflow.tracking_uri"
    assert error.message.startswith("integrations[0].mlflow.tracking_uri ")


def test_a_deployments_allow_list_limits_mlflow_servers_by_name_or_cidr() -> None:
    allowed = ["mlflow.internal", "10.1.0.0/16"]
    for uri in ("http://mlflow.internal:5000", "http://10.1.2.3:5000"):
        check_request(request(mlflow(tracking_uri=uri)), max_lora_rank=64, mlflow_allowed_targets=allowed)
    error = refusal(request(mlflow(tracking_uri="http://169.254.169.254/")), allowed)
    assert error.param == "integrations[0].mlflow.tracking_uri"
    assert "not among this deployment's allowed MLflow servers" in error.message
