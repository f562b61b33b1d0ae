"""Each engine's greedy outputs equal transformers + peft's, token for token, in float32.

Batches of three kinds are formed on purpose (:class:`AdmissionGate`): base model only,
one adapter, and mixed: base rows beside as many adapters as the replica holds
(``inference_max_loras``), so that every adapter slot is in use in the batch. The adapters
are the fixed-reply ones of :mod:`adapter_factory` and two trained by the trainer's
worker code (its data loading, training loop and save), as a fine-tuning job makes them.

The mixed batch is the one that catches vLLM's CPU LoRA bug: a row without an adapter gets
the adapter in the last slot whenever that slot is occupied (see
``services.inference.vllm_engine.lora_slots_for``). With ``lora_slots_for`` returning
``resident_adapters`` instead of one more, ``test_greedy_batch_equals_the_reference[mixed-vllm]``
fails: the base rows answer with the fourth adapter's text.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tailor.inference.v1 import inference_service_pb2 as pb
from tests.integration.inference.adapter_factory import reference_greedy_tokens, train_worker_adapter
from tests.integration.inference.conftest import (
    ALPHA_REPLY,
    BRAVO_REPLY,
    ORG,
    AdmissionGate,
    Replica,
    chat_request,
    complete,
)
from tests.support.grpc_services import as_organization

pytestmark = pytest.mark.asyncio(loop_scope="session")

MAX_TOKENS = 16
PROMPTS = ["hello", "what is 3", "tell me a long story", "why 7"]
# (adapter or None for the base model, user message) per row of one batch
BATCHES = {
    "base-only": [(None, prompt) for prompt in PROMPTS],
    "one-adapter": [("worker-1", prompt) for prompt in PROMPTS],
    "mixed": [
        ("alpha", "hi"),
        (None, "hello"),
        ("worker-1", "what is 3"),
        ("bravo", "hey"),
        (None, "tell me a long story"),
        ("worker-2", "why 7"),
        (None, "why 7"),
    ],
}


@pytest.fixture(scope="session")
def worker_adapters(tailor_tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two adapters from the worker's training code: one trained to its reply, one stopped early."""
    root = tmp_path_factory.mktemp("worker-adapters")
    return {
        "worker-1": train_worker_adapter(
            tailor_tiny_dir, root / "worker-1", reply="The answer is forty-two.", seed=3, epochs=3
        ),
        "worker-2": train_worker_adapter(
            tailor_tiny_dir, root / "worker-2", reply="Let me think about that for a while.", seed=4, epochs=1
        ),
    }


@pytest.mark.parametrize("batch", list(BATCHES))
async def test_greedy_batch_equals_the_reference(
    replica: Replica,
    batch: str,
    trained_adapters: dict[str, Path],
    worker_adapters: dict[str, Path],
    tailor_tiny_dir: Path,
) -> None:
    directories = {
        "alpha": trained_adapters[ALPHA_REPLY], "bravo": trained_adapters[BRAVO_REPLY], **worker_adapters
    }
    rows = BATCHES[batch]
    names = sorted({name for name, _ in rows if name is not None})
    assert batch != "mixed" or len(names) == replica.runtime.engine.adapter_capacity, "every slot in use"
    refs = {name: await replica.upload(f"ft:tailor-tiny:org-a::{name}", directories[name]) for name in names}
    with as_organization(ORG):  # all resident before the batch forms
        for ref in refs.values():
            await replica.stub.LoadAdapter(pb.LoadAdapterRequest(adapter=ref))

    gate = AdmissionGate(replica.runtime.engine)
    await gate.shut()
    calls = [
        asyncio.create_task(
            complete(replica.stub, chat_request(prompt, adapter=refs.get(name or ""), max_tokens=MAX_TOKENS))
        )
        for name, prompt in rows
    ]
    await gate.open_when_waiting(len(rows))
    results = await asyncio.gather(*calls)

    expected = [
        reference_greedy_tokens(tailor_tiny_dir, prompt, MAX_TOKENS, directories[name] if name else None)
        for name, prompt in rows
    ]
    got = [(result.text, result.usage.completion_tokens) for result in results]
    assert got == expected, [(row, g, e) for row, g, e in zip(rows, got, expected, strict=True) if g != e]
