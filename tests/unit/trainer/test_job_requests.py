"""OpenAI's ranges for a job request, at their edges, and the request fingerprint behind idempotency."""

from __future__ import annotations

from typing import Any

import pytest

from services.common.errors import InvalidArgument
from services.trainer.job_requests import check_request, method_type, request_fingerprint
from tailor.trainer.v1 import job_pb2
from tailor.trainer.v1 import trainer_service_pb2 as trainer_pb2

DPO = job_pb2.METHOD_TYPE_DPO


def request(method: int = job_pb2.METHOD_TYPE_UNSPECIFIED, **fields: Any) -> trainer_pb2.CreateJobRequest:
    hyperparameters = {
        k: fields.pop(k) for k in list(fields) if k in job_pb2.Hyperparameters.DESCRIPTOR.fields_by_name
    }
    return trainer_pb2.CreateJobRequest(
        model="tailor-tiny",
        training_file="file-1",
        method=job_pb2.Method(type=method, hyperparameters=job_pb2.Hyperparameters(**hyperparameters)),
        **fields,
    )


@pytest.mark.parametrize(
    "accepted",
    [
        request(n_epochs=1), request(n_epochs=50), request(batch_size=1), request(batch_size=256),
        request(learning_rate_multiplier=1e-6), request(learning_rate_multiplier=50.0),
        request(DPO, beta=2.0), request(DPO, beta=1e-3), request(lora_rank=8), request(lora_rank=64),
        request(lora_dropout=0.0), request(lora_alpha=0.5), request(suffix="a"), request(suffix="A-b_9" * 12 + "abcd"),
        request(seed=0), request(seed=2_147_483_647), request(metadata={f"k{i}": "v" * 512 for i in range(16)}),
    ],
)  # fmt: skip
def test_values_at_the_edges_of_openais_ranges_are_accepted(accepted: trainer_pb2.CreateJobRequest) -> None:
    check_request(accepted, max_lora_rank=64)


@pytest.mark.parametrize(
    ("refused", "param"),
    [
        (request(learning_rate_multiplier=float("nan")), "hyperparameters.learning_rate_multiplier"),
        (request(learning_rate_multiplier=float("inf")), "hyperparameters.learning_rate_multiplier"),
        (request(DPO, beta=2.0001), "hyperparameters.beta"),
        (request(lora_rank=64), "hyperparameters.lora_rank"),  # over a max of 32
        (request(lora_alpha=0), "hyperparameters.lora_alpha"),
        (request(lora_dropout=-0.1), "hyperparameters.lora_dropout"),
        (request(suffix="with space"), "suffix"),
        (request(metadata={"": "v"}), "metadata"),
    ],
)
def test_values_past_the_edges_are_refused(refused: trainer_pb2.CreateJobRequest, param: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        check_request(refused, max_lora_rank=32)
    assert caught.value.param == param


def test_supervised_is_the_default_method() -> None:
    assert method_type(request()) == job_pb2.METHOD_TYPE_SUPERVISED
    assert method_type(request(DPO)) == DPO


def test_the_fingerprint_ignores_the_key_but_not_the_body() -> None:
    base = request(n_epochs=3, metadata={"a": "1", "b": "2"})
    with_key = request(n_epochs=3, metadata={"b": "2", "a": "1"}, idempotency_key="k")
    assert request_fingerprint(base) == request_fingerprint(with_key)
    assert request_fingerprint(base) != request_fingerprint(
        request(n_epochs=4, metadata={"a": "1", "b": "2"})
    )
