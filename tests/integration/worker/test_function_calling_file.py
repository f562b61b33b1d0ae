"""A file in OpenAI's deprecated function-calling form is processed at upload, and it trains.

The regression this guards: the dataset service accepted ``function`` messages and assistant
messages holding only a ``function_call`` (as OpenAI does), while the worker refused them, so
such a file uploaded as ``processed`` and then failed its job with ``invalid_training_file``.
Here the real dataset service validates and stores the file, and the worker downloads it from
that service and trains on it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from services.common.grpc_client import open_channel
from services.common.grpc_server import GrpcServer
from services.dataset.config import DatasetSettings
from services.dataset.files import FileService
from services.dataset.server import dataset_registration
from services.trainer.worker.run import run_worker
from tailor.dataset.v1 import dataset_service_pb2 as dataset_pb
from tailor.dataset.v1 import dataset_service_pb2_grpc as dataset_grpc
from tailor.trainer.v1 import job_pb2
from tests.integration.dataset.support import upload
from tests.integration.worker.conftest import ORGANIZATION, WorkerSettingsFactory, training_plan
from tests.integration.worker.fakes import FakeServices
from tests.support.grpc_services import as_organization


def weather_example(city: str, degrees: int) -> dict[str, Any]:
    return {
        "messages": [
            {"role": "user", "content": f"What is the weather in {city}?"},
            {
                "role": "assistant",
                "content": None,
                "function_call": {"name": "get_weather", "arguments": json.dumps({"city": city})},
            },
            {"role": "function", "name": "get_weather", "content": f"{degrees} degrees"},
            {"role": "assistant", "content": f"It is {degrees} degrees in {city}."},
        ],
        "functions": [
            {
                "name": "get_weather",
                "description": "The weather in a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            }
        ],
    }


@pytest.fixture
async def dataset_service(tmp_path: Path) -> AsyncIterator[tuple[str, dataset_grpc.DatasetServiceStub]]:
    """The real dataset service on a loopback port (checks in a thread: no worker processes to start)."""
    settings = DatasetSettings(data_dir=tmp_path / "dataset", dataset_validation_processes=0)
    files = FileService.open(settings)
    server = GrpcServer(settings, "127.0.0.1:0", [dataset_registration(files)])
    address = f"127.0.0.1:{await server.start()}"
    channel = open_channel(address, settings)
    try:
        yield address, dataset_grpc.DatasetServiceStub(channel)
    finally:
        await channel.close()
        await server.stop()
        await files.close()


async def test_a_function_calling_file_is_processed_at_upload_and_trains(
    tmp_path: Path,
    fakes: FakeServices,
    tailor_tiny_dir: Path,
    worker_settings: WorkerSettingsFactory,
    dataset_service: tuple[str, dataset_grpc.DatasetServiceStub],
) -> None:
    address, stub = dataset_service
    cities = ["Lisbon", "Porto", "Faro", "Braga"]
    data = "".join(json.dumps(weather_example(city, 18 + i)) + "\n" for i, city in enumerate(cities)).encode()
    with as_organization(ORGANIZATION):
        uploaded = await upload(stub, data)
    assert uploaded.status == dataset_pb.FILE_STATUS_PROCESSED, uploaded.status_details
    assert uploaded.statistics.examples == len(cities)

    fakes.trainer.plan = training_plan(
        tailor_tiny_dir,
        training_file=uploaded.id,
        hyperparameters=job_pb2.Hyperparameters(n_epochs=1, batch_size=2),
    )
    settings = worker_settings(tmp_path / "worker", fakes, dataset_addr=address)

    assert await run_worker(settings, handle_signals=False) == 0

    assert "ReportFailed" not in fakes.trainer.methods()
    (succeeded,) = fakes.trainer.requests("ReportSucceeded")
    assert succeeded.trained_tokens > 0
    assert fakes.trainer.messages()[0].startswith(f"Training file: {len(cities)} chat examples, ")
    # The results file went to the same dataset service, in the job's organization.
    (results_id,) = succeeded.result_files
    with as_organization(ORGANIZATION):
        stored = await stub.GetFile(dataset_pb.GetFileRequest(file_id=results_id))
    assert stored.file.purpose == dataset_pb.FILE_PURPOSE_FINE_TUNE_RESULTS
