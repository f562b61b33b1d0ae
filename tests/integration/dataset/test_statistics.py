"""GetFileStatistics over real gRPC: counts from validation, and token counts under tailor-tiny's tokenizer.

Expected token counts come from tailor-tiny's tokenizer applied to ChatML text written out
here by hand, so the test also checks that examples are rendered with the chat template.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from services.common.tailor_tiny import ensure_tailor_tiny
from services.dataset.config import DatasetSettings
from services.dataset.statistics import torch_available
from tailor.dataset.v1 import dataset_service_pb2 as pb
from tests.integration.dataset.conftest import Served, start
from tests.integration.dataset.support import jsonl, upload
from tests.support.grpc_services import as_organization

ORG = "org-stats"
MAX_SEQ_LENGTH = 512  # tailor-tiny's default


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tailor-tiny, built once for the session (building it needs torch)."""
    if not torch_available():
        pytest.skip("building tailor-tiny needs torch")
    directory = tmp_path_factory.mktemp("models")
    ensure_tailor_tiny(directory)
    return directory


@pytest.fixture
async def service(models_dir: Path, tmp_path: Path) -> AsyncIterator[Served]:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "models").symlink_to(models_dir)
    async for served in start(DatasetSettings(data_dir=data_dir)):
        yield served


@pytest.fixture(scope="session")
def tokenizer(models_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(ensure_tailor_tiny(models_dir)))


def chatml(*messages: tuple[str, str]) -> str:
    return "".join(f"<|im_start|>{role}\n{content}<|im_end|>\n" for role, content in messages)


def count(tokenizer: Any, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


async def statistics(served: Served, file_id: str, base_model: str = "") -> pb.GetFileStatisticsResponse:
    return await served.stub.GetFileStatistics(
        pb.GetFileStatisticsRequest(file_id=file_id, base_model=base_model)
    )


def chat(user: str, assistant: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]}


async def test_chat_token_counts_follow_the_chat_template(service: Served, tokenizer: Any) -> None:
    long_reply = "the quick brown fox " * 200  # well over 512 tokens
    examples = [chat("Capital of France?", "Paris."), chat("And of Spain?", long_reply)]
    with as_organization(ORG):
        file = await upload(service.stub, jsonl(*examples), chunk_size=64)
        plain = await statistics(service, file.id)
        assert plain.statistics == file.statistics and not plain.HasField("tokens")

        counted = await statistics(service, file.id, "tailor-tiny")
    lengths = [
        count(tokenizer, chatml(("user", "Capital of France?"), ("assistant", "Paris."))),
        count(tokenizer, chatml(("user", "And of Spain?"), ("assistant", long_reply))),
    ]
    assert lengths[1] > MAX_SEQ_LENGTH > lengths[0]
    assert counted.statistics == file.statistics
    assert counted.tokens == pb.TokenStatistics(
        base_model="tailor-tiny",
        total_tokens=sum(lengths),
        max_example_tokens=lengths[1],
        examples_over_max_length=1,
    )


async def test_preference_examples_count_both_sequences(service: Served, tokenizer: Any) -> None:
    example = {
        "input": {"messages": [{"role": "user", "content": "Capital of France?"}]},
        "preferred_output": [{"role": "assistant", "content": "Paris."}],
        "non_preferred_output": [{"role": "assistant", "content": "It is Lyon, I think."}],
    }
    with as_organization(ORG):
        file = await upload(service.stub, jsonl(example))
        counted = await statistics(service, file.id, "tailor-tiny")
    preferred = count(tokenizer, chatml(("user", "Capital of France?"), ("assistant", "Paris.")))
    rejected = count(tokenizer, chatml(("user", "Capital of France?"), ("assistant", "It is Lyon, I think.")))
    assert (counted.tokens.total_tokens, counted.tokens.max_example_tokens) == (
        preferred + rejected,
        rejected,
    )


async def test_prompt_completion_examples_count_their_text(service: Served, tokenizer: Any) -> None:
    with as_organization(ORG):
        file = await upload(
            service.stub, jsonl({"prompt": "The capital of France is", "completion": " Paris."})
        )
        counted = await statistics(service, file.id, "tailor-tiny")
    assert counted.tokens.total_tokens == count(tokenizer, "The capital of France is Paris.")


async def test_an_unknown_base_model_or_a_file_without_statistics_is_refused(service: Served) -> None:
    with as_organization(ORG):
        good = await upload(service.stub, jsonl(chat("Hi", "Hello.")))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await statistics(service, good.id, "gpt-17")
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "gpt-17" in caught.value.details()

        batch = await upload(
            service.stub, json.dumps({"custom_id": "1"}).encode(), purpose=pb.FILE_PURPOSE_BATCH
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await statistics(service, batch.id)
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "fine-tune" in caught.value.details()
