"""The trainer's own check of a job's integrations: OpenAI's rules, the offending item named."""

from __future__ import annotations

import pytest

from services.common.errors import InvalidArgument
from services.trainer.job_requests import check_request
from tailor.trainer.v1 import job_pb2
from tailor.trainer.v1 import trainer_service_pb2 as trainer_pb2


def wandb(project: str = "p", type_: str = "wandb") -> job_pb2.Integration:
    return job_pb2.Integration(type=type_, wandb=job_pb2.WandbIntegration(project=project, tags=["a"]))


def request(*integrations: job_pb2.Integration) -> trainer_pb2.CreateJobRequest:
    return trainer_pb2.CreateJobRequest(
        model="tailor-tiny", training_file="file-1", integrations=integrations
    )


def test_up_to_five_wandb_integrations_with_a_project_are_accepted() -> None:
    check_request(request(*[wandb(f"p{i}") for i in range(5)]), max_lora_rank=64)


@pytest.mark.parametrize(
    ("refused", "param"),
    [
        (request(wandb(), wandb(type_="mlflow")), "integrations[1].type"),
        (request(wandb(project="")), "integrations[0].wandb.project"),
        (request(*[wandb() for _ in range(6)]), "integrations"),
    ],
)
def test_a_bad_integration_is_refused_naming_it(refused: trainer_pb2.CreateJobRequest, param: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        check_request(refused, max_lora_rank=64)
    assert caught.value.param == param
