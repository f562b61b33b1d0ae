"""The vllm engine on a CUDA GPU, checked against the hf engine: same greedy answers, adapters, abort.

Needs a CUDA GPU and vLLM 0.32's CUDA build (``pip install -e '.[vllm]'``); skipped
otherwise. Run with ``make test-gpu``. tailor-tiny is served in float32 by both engines, so
greedy outputs are comparable token for token; the adapters are trained here as in the
integration tests.
"""

from __future__ import annotations

import asyncio
import importlib.util
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
import torch

from services.common.tailor_tiny import ensure_tailor_tiny
from services.inference.engine import Engine, GenerationRequest
from services.inference.sampling import SamplingSettings
from tests.integration.inference.adapter_factory import chat_prompt_ids, train_fixed_reply_adapter

pytestmark = [
    pytest.mark.gpu,
    # One pair of engines (and one event loop) for the whole module: vLLM takes a while to start.
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
    pytest.mark.skipif(
        importlib.util.find_spec("vllm") is None, reason="needs vLLM (pip install -e '.[vllm]')"
    ),
]

REPLIES = {"alpha": "Alpha says hello", "bravo": "Bravo reporting in"}
MESSAGES = ["hello", "what is the weather in Lisbon?", "x", "tell me a long story"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_tailor_tiny(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def adapter_dirs(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("adapters")
    return {
        name: train_fixed_reply_adapter(model_dir, reply, root / name, seed=seed)
        for seed, (name, reply) in enumerate(REPLIES.items())
    }


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def engines(model_dir: Path, adapter_dirs: dict[str, Path]) -> AsyncIterator[dict[str, Engine]]:
    from transformers import AutoTokenizer

    from services.inference.hf_engine import HFEngine
    from services.inference.vllm_engine import VLLMEngine

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    built: dict[str, Engine] = {
        "vllm": VLLMEngine(
            str(model_dir),
            served_model_name="tailor-tiny",
            dtype="float32",
            max_batch_size=32,
            max_loras=2,
            max_cpu_loras=4,
            max_lora_rank=8,
            gpu_memory_utilization=0.3,
            enforce_eager=True,
        ),
        "hf": HFEngine.from_pretrained(
            str(model_dir),
            tokenizer,
            device="cuda",
            dtype="float32",
            max_batch_size=32,
            max_loras=2,
            max_lora_rank=8,
        ),
    }
    for engine in built.values():
        for name, directory in adapter_dirs.items():
            await engine.add_adapter(name, directory)
    yield built
    for engine in built.values():
        await engine.close()


async def generate_text(
    engine: Engine, prompt_ids: list[int], adapter: str | None, max_tokens: int = 24
) -> str:
    request = GenerationRequest(
        request_id=uuid.uuid4().hex,
        prompt_token_ids=tuple(prompt_ids),
        sampling=SamplingSettings(max_tokens=max_tokens, temperature=0.0),
        adapter=adapter,
    )
    return "".join([delta.text async for deltas in engine.generate(request) for delta in deltas])


@pytest.mark.parametrize("adapter", [None, "alpha", "bravo"])
async def test_vllm_greedy_outputs_match_the_hf_engine(
    engines: dict[str, Engine], model_dir: Path, adapter: str | None
) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    prompts = [chat_prompt_ids(tokenizer, message) for message in MESSAGES]
    # All prompts at once, so vLLM batches them as it would under load.
    vllm_texts = await asyncio.gather(*(generate_text(engines["vllm"], p, adapter) for p in prompts))
    hf_texts = await asyncio.gather(*(generate_text(engines["hf"], p, adapter) for p in prompts))
    assert vllm_texts == hf_texts
    if adapter is not None:
        assert set(vllm_texts) == {REPLIES[adapter]}


async def test_closing_a_vllm_stream_aborts_the_request(engines: dict[str, Engine], model_dir: Path) -> None:
    from transformers import AutoTokenizer

    engine = engines["vllm"]
    prompt = chat_prompt_ids(AutoTokenizer.from_pretrained(model_dir), "tell me a long story")
    request = GenerationRequest(
        uuid.uuid4().hex, tuple(prompt), SamplingSettings(max_tokens=1500, temperature=0.0), ignore_eos=True
    )
    stream = engine.generate(request)
    async for _ in stream:
        break
    await stream.aclose()
    assert engine.load().running == 0
    assert await generate_text(engine, prompt, "alpha") == REPLIES["alpha"]


async def test_removing_and_re_adding_an_adapter_keeps_its_id(
    engines: dict[str, Engine], adapter_dirs: dict[str, Path]
) -> None:
    engine = engines["vllm"]
    first_id = engine._ids.id_for("bravo")  # type: ignore[attr-defined]
    await engine.remove_adapter("bravo")
    assert first_id not in await engine._llm.list_loras()  # type: ignore[attr-defined]
    await engine.add_adapter("bravo", adapter_dirs["bravo"])
    assert engine._ids.id_for("bravo") == first_id  # type: ignore[attr-defined]
    assert first_id in await engine._llm.list_loras()  # type: ignore[attr-defined]
