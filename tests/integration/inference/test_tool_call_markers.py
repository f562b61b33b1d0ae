"""A reply whose tool-call marker is a special token becomes tool_calls on both engines, with no stray tokens.

Mistral v0.3 opens its calls with ``[TOOL_CALLS]``, a control token (special), which engines
decoding with ``skip_special_tokens`` would drop, so the call would come back as text. For a
request with tools the service has the engine keep that marker, and only it
(``tool_calls.special_markers``). tiny-phi3's markers are not special (as Phi-4-mini's): the
same test checks that nothing changes for them.

Per family a fixed-reply LoRA is trained to answer any question, with the tools offered, with
one tool call (the template's own words for it), and served once per engine.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from services.common.base_models import BaseModelSpec
from services.common.tiny_models import TINY_MODELS
from tailor.inference.v1 import inference_service_pb2 as pb
from tests.integration.inference.adapter_factory import (
    reference_greedy,
    target_modules_of,
    train_fixed_reply_adapter,
)
from tests.integration.inference.conftest import ORG, VLLMEngines
from tests.support.grpc_services import as_organization

pytestmark = pytest.mark.asyncio(loop_scope="session")

# Short, so that a LoRA on a tiny model learns the call in a round of training (a call with
# arguments and an id was not learnt in 600 steps); the parsers' own tests cover the rest.
TOOLS = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}]
# Each family's tool call as its template writes one.
CALLS = {
    "tiny-mistral": '[TOOL_CALLS] [{"name": "f", "arguments": {}}]',
    "tiny-phi3": '<|tool_call|>[{"name": "f", "arguments": {}}]<|/tool_call|>',
}
PROBES = ("hi", "Weather in Lisbon?")
MAX_TOKENS = 32


@pytest.fixture(scope="session")
def tool_adapters(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], tuple[Path, Path]]:
    """A family's base model and its tool-call adapter, built on first use."""
    root = tmp_path_factory.mktemp("tool-markers")
    built: dict[str, tuple[Path, Path]] = {}

    def get(name: str) -> tuple[Path, Path]:
        if name not in built:
            base_dir = TINY_MODELS[name].ensure(root / "models")
            adapter_dir = train_fixed_reply_adapter(
                base_dir, CALLS[name], root / "adapters" / name, probes=PROBES, tools=TOOLS
            )
            built[name] = base_dir, adapter_dir
        return built[name]

    return get


@pytest.fixture
def one_vllm_engine_at_a_time(vllm_engines: VLLMEngines, engine_kind: str) -> Iterator[None]:
    if engine_kind == "vllm":
        vllm_engines.release()
    yield
    if engine_kind == "vllm":
        vllm_engines.release()


@pytest.mark.parametrize("name", sorted(CALLS))
async def test_a_tool_call_after_a_special_marker_comes_back_as_tool_calls(
    name: str,
    engine_kind: str,
    tool_adapters: Callable[[str], tuple[Path, Path]],
    replica_factory: Callable[..., Any],
    one_vllm_engine_at_a_time: None,
) -> None:
    base_dir, adapter_dir = tool_adapters(name)
    overrides = {"base_models": {name: BaseModelSpec(source=str(base_dir))}, "inference_base_model": name}
    async with replica_factory(**overrides) as replica:
        special = replica.runtime.service.tool_call_tokens
        assert special == ({"[TOOL_CALLS]"} if name == "tiny-mistral" else set())
        uploaded = await replica.upload(f"ft:{name}:{ORG}::tools", adapter_dir)
        adapter = pb.AdapterRef(
            name=uploaded.name,
            uri=uploaded.uri,
            base_model=name,
            lora_rank=8,
            target_modules=target_modules_of(base_dir),
        )

        with_tools = await _generate(replica.stub, _request(name, adapter, tools=True))
        assert with_tools["finish_reasons"] == [pb.FINISH_REASON_TOOL_CALLS]
        assert with_tools["text"] == ""
        assert [(c.name, json.loads(c.arguments)) for c in with_tools["calls"]] == [("f", {})]

        # Without tools nothing changes: the text is transformers' greedy reply decoded without
        # special tokens (whatever the adapter, trained with tools offered, answers here).
        without_tools = await _generate(replica.stub, _request(name, adapter, tools=False))
        assert without_tools["calls"] == []
        expected = reference_greedy(base_dir, "Weather in Lisbon?", MAX_TOKENS, adapter_dir)
        assert without_tools["text"] == expected.rstrip("\ufffd")


def _request(name: str, adapter: pb.AdapterRef, *, tools: bool) -> pb.GenerateCompletionRequest:
    return pb.GenerateCompletionRequest(
        base_model=name,
        adapter=adapter,
        chat=pb.ChatInput(
            messages=[pb.ChatMessage(role="user", content="Weather in Lisbon?")],
            tools_json=json.dumps(TOOLS) if tools else "",
        ),
        sampling=pb.SamplingParams(temperature=0.0, max_tokens=MAX_TOKENS),
    )


async def _generate(stub: Any, request: pb.GenerateCompletionRequest) -> dict[str, Any]:
    text, calls, finish_reasons = "", [], []
    with as_organization(ORG):
        async for response in stub.GenerateCompletion(request):
            for delta in response.deltas:
                text += delta.text
                calls.extend(delta.tool_calls)
                if delta.finish_reason:
                    finish_reasons.append(delta.finish_reason)
    return {"text": text, "calls": calls, "finish_reasons": finish_reasons}
