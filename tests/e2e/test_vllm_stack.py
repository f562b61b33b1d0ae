"""The SDK flow with the inference service on the vLLM engine: fine-tune, chat plain and streamed, checkpoints.

The platform is started as `make up` starts it, with ``TAILOR_INFERENCE_ENGINE=vllm``
(vLLM's CPU build from the dev profile): the tests of test_fine_tuning_flow that reach
the inference service, and those of test_tool_calls, run again against it, with this
module's ``stack``. Where vLLM is missing the stack fails to start and these tests fail;
they are never skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import KEY_A, KEY_B, Stack
# Fixtures and tests run here on this module's stack, in the flow's order (the last deletes the model).
from tests.e2e.test_fine_tuning_flow import (  # noqa: F401, I001
    trained,
    test_the_job_succeeds_with_openais_shape,
    test_checkpoints_are_listed_and_servable,
    test_chat_with_the_fine_tuned_model_plain_and_streamed,
    test_sse_framing_on_the_wire,
    test_deleting_the_model_makes_it_404_everywhere,
)
# A function-calling fine-tune answers with tool_calls on vLLM too (parsed above the engine).
from tests.e2e.test_tool_calls import (  # noqa: F401, I001
    tool_model,
    test_the_answer_is_the_trained_tool_call,
    test_the_streamed_answer_accumulates_to_the_same_call,
    test_tool_choice_none_answers_in_text,
)
from tests.support.local_stack import assert_served_by_vllm, running_stack

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    data_dir: Path = tmp_path_factory.mktemp("e2e-vllm") / "data"
    with running_stack(
        data_dir,
        TAILOR_API_KEYS=f"{KEY_A}=org-a,{KEY_B}=org-b",
        TAILOR_INFERENCE_ENGINE="vllm",
        # one core for vLLM's compute threads, the other for training and the other services
        TAILOR_INFERENCE_VLLM_CPU_THREADS="1",
    ) as platform:
        assert_served_by_vllm(platform.launcher.output)
        yield Stack(url=platform.url, rate_limited_url=platform.url)
