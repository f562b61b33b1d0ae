"""The SDK flow with the inference service on the vLLM engine: fine-tune, chat plain and streamed, checkpoints.

The platform is started as `make up` starts it, with ``TAILOR_INFERENCE_ENGINE=vllm``
(vLLM's CPU build from the dev profile): the tests of test_fine_tuning_flow that reach
the inference service run again against it, with this module's ``stack``. Where vLLM is
missing the stack fails to start and these tests fail; they are never skipped.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import KEY_A, KEY_B, STARTUP_TIMEOUT_S, Stack
# Fixtures and tests run here on this module's stack, in the flow's order (the last deletes the model).
from tests.e2e.test_fine_tuning_flow import (  # noqa: F401, I001
    trained,
    test_the_job_succeeds_with_openais_shape,
    test_checkpoints_are_listed_and_servable,
    test_chat_with_the_fine_tuned_model_plain_and_streamed,
    test_sse_framing_on_the_wire,
    test_deleting_the_model_makes_it_404_everywhere,
)
from tests.support.processes import OutputWatchedProcess, free_port

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    data_dir: Path = tmp_path_factory.mktemp("e2e-vllm") / "data"
    ports = {name: free_port() for name in ("dataset", "trainer", "inference", "gateway")}
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAILOR_")}
    env.update(
        TAILOR_DATA_DIR=str(data_dir),
        TAILOR_DATASET_ADDR=f"127.0.0.1:{ports['dataset']}",
        TAILOR_TRAINER_ADDR=f"127.0.0.1:{ports['trainer']}",
        TAILOR_INFERENCE_ADDR=f"127.0.0.1:{ports['inference']}",
        TAILOR_GATEWAY_PORT=str(ports["gateway"]),
        TAILOR_API_KEYS=f"{KEY_A}=org-a,{KEY_B}=org-b",
        TAILOR_INFERENCE_ENGINE="vllm",
        # one core for vLLM's compute threads, the other for training and the other services
        TAILOR_INFERENCE_VLLM_CPU_THREADS="1",
        HF_HUB_OFFLINE="1",
        PYTHONUNBUFFERED="1",
    )
    launcher = OutputWatchedProcess([sys.executable, "-m", "services.local_stack"], env)
    try:
        launcher.wait_for("all services are up", STARTUP_TIMEOUT_S)
        assert any('"engine": "vllm"' in line and "engine ready" in line for line in launcher.output), (
            "the inference service did not start on vLLM"
        )
        url = f"http://127.0.0.1:{ports['gateway']}"
        yield Stack(url=url, rate_limited_url=url)
    finally:
        launcher.stop()
