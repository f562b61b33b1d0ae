"""One LoRA rank limit: whatever rank the trainer lets a job train, an inference replica serves.

Under ``make up`` a job with ``lora_rank: 32`` used to train and register, then every chat
with it failed with ``invalid_adapter``: the trainer allowed 64 and inference 16, in two
settings. Now both read ``max_lora_rank`` from the common settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from transformers import AutoModelForCausalLM

from services.common.errors import InvalidArgument
from services.common.settings import CommonSettings
from services.trainer.job_requests import check_hyperparameters
from tailor.inference.v1 import inference_service_pb2 as pb
from tailor.trainer.v1 import job_pb2
from tests.integration.inference.adapter_factory import random_adapter
from tests.integration.inference.conftest import chat_request, complete

DEFAULT_LIMIT = CommonSettings.model_fields["max_lora_rank"].default


@pytest.mark.asyncio(loop_scope="session")  # replicas on the vLLM engine share the session's loop
async def test_an_adapter_of_the_largest_rank_a_job_may_train_is_served_with_default_settings(
    replica_factory: Any, tailor_tiny_dir: Path, tmp_path: Path
) -> None:
    check_hyperparameters(
        job_pb2.Hyperparameters(lora_rank=DEFAULT_LIMIT), job_pb2.METHOD_TYPE_SUPERVISED, max_lora_rank=DEFAULT_LIMIT
    )  # the trainer accepts it
    adapter_dir = random_adapter(
        AutoModelForCausalLM.from_pretrained(tailor_tiny_dir), tmp_path / "wide", rank=DEFAULT_LIMIT
    )
    async with replica_factory(max_lora_rank=DEFAULT_LIMIT) as replica:
        ref = await replica.upload("ft:tailor-tiny:org-a::wide", adapter_dir)
        answer = await complete(replica.stub, chat_request("hi", adapter=ref, max_tokens=4))
    assert answer.finish_reasons == {0: pb.FINISH_REASON_LENGTH} and answer.usage.completion_tokens == 4


def test_a_rank_over_the_limit_is_refused_at_job_creation_naming_lora_rank() -> None:
    over = min(rank for rank in (128, 256, 320, 512) if rank > DEFAULT_LIMIT)
    with pytest.raises(InvalidArgument) as refused:
        check_hyperparameters(
            job_pb2.Hyperparameters(lora_rank=over), job_pb2.METHOD_TYPE_SUPERVISED, max_lora_rank=DEFAULT_LIMIT
        )
    assert refused.value.param == "hyperparameters.lora_rank"


def test_a_base_model_whose_default_rank_is_over_the_limit_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="no replica serves"):
        CommonSettings(max_lora_rank=8, base_models={"m": {"source": "builtin:tailor-tiny", "lora_rank": 16}})
