"""Model names, the wording of metrics events, and which dataset files a job can use."""

from __future__ import annotations

import pytest

from services.common.errors import InvalidArgument
from services.trainer.events import metrics_message
from services.trainer.file_checks import file_problem, missing_file
from services.trainer.registry import checkpoint_model_name, fine_tuned_model_name
from services.trainer.storage import job_output
from tailor.dataset.v1 import dataset_service_pb2 as dataset_pb2
from tailor.trainer.v1 import job_pb2


def test_model_names_follow_openais_shape() -> None:
    name = fine_tuned_model_name("tailor-tiny", "org-a", "pirate", "AbCd1234")
    assert name == "ft:tailor-tiny:org-a:pirate:AbCd1234"
    assert (
        fine_tuned_model_name("qwen/Qwen2.5-0.5B", "org-a", "", "AbCd1234")
        == "ft:qwen/Qwen2.5-0.5B:org-a::AbCd1234"
    )
    assert checkpoint_model_name(name, 88) == "ft:tailor-tiny:org-a:pirate:AbCd1234:ckpt-step-88"


def test_metrics_events_read_as_openais() -> None:
    metrics = job_pb2.Metrics(step=12, total_steps=90, train_loss=0.8312, valid_loss=0.9)
    assert metrics_message(metrics) == "Step 12/90: training loss=0.8312, validation loss=0.9"


def processed(example_format: int, examples: int = 20) -> dataset_pb2.File:
    return dataset_pb2.File(
        id="file-1",
        purpose=dataset_pb2.FILE_PURPOSE_FINE_TUNE,
        status=dataset_pb2.FILE_STATUS_PROCESSED,
        statistics=dataset_pb2.FileStatistics(format=example_format, examples=examples),
    )


@pytest.mark.parametrize(
    ("example_format", "method"),
    [
        (dataset_pb2.EXAMPLE_FORMAT_CHAT, job_pb2.METHOD_TYPE_SUPERVISED),
        (dataset_pb2.EXAMPLE_FORMAT_PROMPT_COMPLETION, job_pb2.METHOD_TYPE_SUPERVISED),
        (dataset_pb2.EXAMPLE_FORMAT_PREFERENCE, job_pb2.METHOD_TYPE_DPO),
    ],
)
def test_each_method_trains_on_its_formats(example_format: int, method: int) -> None:
    assert file_problem(processed(example_format), "training_file", method) is None


def test_ten_training_examples_are_the_minimum_but_validation_files_may_be_smaller() -> None:
    chat = dataset_pb2.EXAMPLE_FORMAT_CHAT
    supervised = job_pb2.METHOD_TYPE_SUPERVISED
    assert file_problem(processed(chat, 10), "training_file", supervised) is None
    problem = file_problem(processed(chat, 9), "training_file", supervised)
    assert (
        problem is not None and problem.code == "invalid_training_file" and "at least 10" in problem.message
    )
    assert file_problem(processed(chat, 2), "validation_file", supervised) is None


def test_a_file_still_processing_is_not_a_problem_yet() -> None:
    uploaded = dataset_pb2.File(
        id="file-1", purpose=dataset_pb2.FILE_PURPOSE_FINE_TUNE, status=dataset_pb2.FILE_STATUS_UPLOADED
    )
    assert file_problem(uploaded, "training_file", job_pb2.METHOD_TYPE_SUPERVISED) is None


def test_worker_outputs_must_stay_inside_the_jobs_prefix() -> None:
    prefix = "orgs/o/jobs/ftjob-1/"
    assert job_output("orgs/o/jobs/ftjob-1/adapter", prefix, "adapter_uri") == "orgs/o/jobs/ftjob-1/adapter/"
    for outside in (
        "orgs/o/jobs/ftjob-2/adapter/",
        "orgs/o/jobs/ftjob-1/",
        "orgs/o/jobs/ftjob-1/../x/",
        "/abs/",
    ):
        with pytest.raises(InvalidArgument):
            job_output(outside, prefix, "adapter_uri")


def test_a_missing_files_id_is_quoted_cut_so_the_status_stays_small() -> None:
    # a 10 KB id quoted whole made the status details too large for gRPC: the gateway answered 500
    problem = missing_file("training_file", "file-" + "x" * 10_000)
    assert problem.code == "invalid_training_file"
    assert problem.message.startswith("The training file file-xxx") and len(problem.message) < 200
