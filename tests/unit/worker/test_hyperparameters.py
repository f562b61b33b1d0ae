"""Auto hyperparameters resolve as OpenAI's published rules say; requested values are kept and checked."""

from __future__ import annotations

import pytest

from services.trainer.worker.failures import JobFailure
from services.trainer.worker.hyperparameters import (
    auto_batch_size,
    auto_n_epochs,
    resolve_hyperparameters,
    steps_per_epoch,
)
from tailor.trainer.v1 import job_pb2


def resolve(method: job_pb2.Method, n_examples: int = 20, max_lora_rank: int = 64):  # type: ignore[no-untyped-def]
    return resolve_hyperparameters(
        method,
        n_examples=n_examples,
        base_learning_rate=2e-4,
        default_lora_rank=16,
        max_lora_rank=max_lora_rank,
    )


@pytest.mark.parametrize(
    ("n_examples", "epochs"),
    # the cookbook's worked example (20 -> 5), its floor of 100 example-passes, its ceiling of 25,000
    [(1, 25), (3, 25), (10, 10), (20, 5), (33, 3), (34, 3), (1000, 3), (8333, 3), (8334, 2), (30_000, 1)],
)
def test_auto_epochs_follow_openais_cookbook(n_examples: int, epochs: int) -> None:
    assert auto_n_epochs(n_examples) == epochs


@pytest.mark.parametrize(
    ("n_examples", "batch_size"), [(10, 1), (20, 1), (1000, 2), (50_000, 100), (500_000, 256)]
)
def test_auto_batch_size_is_about_two_per_thousand_examples(n_examples: int, batch_size: int) -> None:
    assert auto_batch_size(n_examples) == batch_size


def test_an_all_auto_supervised_job_resolves_every_hyperparameter() -> None:
    resolved = resolve(job_pb2.Method(type=job_pb2.METHOD_TYPE_SUPERVISED))

    assert (resolved.n_epochs, resolved.batch_size, resolved.learning_rate_multiplier) == (5, 1, 1.0)
    assert resolved.learning_rate == pytest.approx(2e-4)
    assert (resolved.lora_rank, resolved.lora_alpha, resolved.lora_dropout) == (16, 32.0, 0.0)
    assert resolved.beta is None
    reported = resolved.to_method().hyperparameters
    for field in (
        "n_epochs",
        "batch_size",
        "learning_rate_multiplier",
        "lora_rank",
        "lora_alpha",
        "lora_dropout",
    ):
        assert reported.HasField(field), field
    assert not reported.HasField("beta")


def test_requested_values_are_kept_and_the_multiplier_scales_the_base_rate() -> None:
    requested = job_pb2.Hyperparameters(n_epochs=2, batch_size=4, learning_rate_multiplier=0.5, lora_rank=32)

    resolved = resolve(job_pb2.Method(type=job_pb2.METHOD_TYPE_SUPERVISED, hyperparameters=requested))

    assert (resolved.n_epochs, resolved.batch_size, resolved.lora_rank, resolved.lora_alpha) == (
        2,
        4,
        32,
        64.0,
    )
    assert resolved.learning_rate == pytest.approx(1e-4)
    assert steps_per_epoch(20, 4) * resolved.n_epochs == 10


def test_dpo_resolves_beta_to_openais_default() -> None:
    resolved = resolve(job_pb2.Method(type=job_pb2.METHOD_TYPE_DPO))

    assert resolved.dpo and resolved.beta == 0.1
    assert resolved.to_method().type == job_pb2.METHOD_TYPE_DPO
    assert resolved.to_method().hyperparameters.beta == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("requested", "param"),
    [
        (job_pb2.Hyperparameters(lora_rank=12), "hyperparameters.lora_rank"),
        (job_pb2.Hyperparameters(lora_rank=128), "hyperparameters.lora_rank"),  # above the serving side's max
        (job_pb2.Hyperparameters(n_epochs=51), "hyperparameters.n_epochs"),
        (job_pb2.Hyperparameters(batch_size=0), "hyperparameters.batch_size"),
        (job_pb2.Hyperparameters(learning_rate_multiplier=0), "hyperparameters.learning_rate_multiplier"),
        (job_pb2.Hyperparameters(lora_dropout=1.0), "hyperparameters.lora_dropout"),
    ],
)
def test_out_of_range_values_fail_the_job_naming_the_hyperparameter(
    requested: job_pb2.Hyperparameters, param: str
) -> None:
    with pytest.raises(JobFailure) as failure:
        resolve(job_pb2.Method(hyperparameters=requested))
    assert failure.value.code == "invalid_hyperparameters"
    assert failure.value.param == param


def test_beta_above_two_is_refused() -> None:
    method = job_pb2.Method(type=job_pb2.METHOD_TYPE_DPO, hyperparameters=job_pb2.Hyperparameters(beta=2.5))
    with pytest.raises(JobFailure, match="beta"):
        resolve(method)
