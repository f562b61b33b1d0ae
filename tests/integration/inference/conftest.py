"""Fixtures for the inference service on the hf engine, CPU and tailor-tiny, over real gRPC.

tailor-tiny is built once per session and two adapters are trained on it once per session
(a few seconds each): ALPHA always answers "Alpha says hello", BRAVO "Bravo reporting in",
verified against a transformers + peft reference for every probe prompt the tests send.
Each test gets its own data directory, object store (filesystem) and replica.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import torch
from prometheus_client import CollectorRegistry

from services.common.base_models import BaseModelSpec
from services.common.grpc_server import ServiceRegistration
from services.common.object_store import ObjectStore, open_object_store
from services.common.tailor_tiny import ensure_tailor_tiny
from services.inference.config import InferenceSettings
from services.inference.server import SERVICE_NAME, InferenceRuntime, InferenceServicer, build_runtime
from tailor.inference.v1 import inference_service_pb2 as pb
from tailor.inference.v1 import inference_service_pb2_grpc as pb_grpc
from tests.integration.inference.adapter_factory import train_fixed_reply_adapter
from tests.support.grpc_services import as_organization, serving

ORG = "org-a"
OTHER_ORG = "org-b"
ALPHA_REPLY = "Alpha says hello"
BRAVO_REPLY = "Bravo reporting in"


@pytest.fixture(scope="session", autouse=True)
def _few_threads() -> None:
    # Two shared cores: one intra-op thread keeps runs steady and leaves room for the gRPC loop.
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tailor_tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_tailor_tiny(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def trained_adapters(tailor_tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Adapter directories by reply: ALPHA_REPLY and BRAVO_REPLY.

    Each is checked against transformers + peft before it is returned: for every prompt in
    ``PROBE_PROMPTS`` the reference answers exactly its reply, so a test that compares an
    engine's text with the reply compares it with this run's reference output.
    """
    root = tmp_path_factory.mktemp("adapters")
    return {
        reply: train_fixed_reply_adapter(tailor_tiny_dir, reply, root / name, seed=seed)
        for seed, (name, reply) in enumerate([("alpha", ALPHA_REPLY), ("bravo", BRAVO_REPLY)])
    }


@pytest.fixture
def settings_factory(tailor_tiny_dir: Path, tmp_path: Path) -> Callable[..., InferenceSettings]:
    def make(**overrides: Any) -> InferenceSettings:
        values: dict[str, Any] = {
            "data_dir": tmp_path / "data",
            "base_models": {"tailor-tiny": BaseModelSpec(source=str(tailor_tiny_dir))},
            "inference_engine": "hf",
            "inference_device": "cpu",
            "inference_max_loras": 4,
            "inference_max_batch_size": 16,
            "max_lora_rank": 16,  # small slots for a small model; test_adapters refuses r=64 by it
            "rpc_timeout_s": 30.0,
        }
        return InferenceSettings(**{**values, **overrides})

    return make


@dataclass
class Replica:
    """A running inference replica: its runtime (engine, cache), a stub to it, and its object store."""

    runtime: InferenceRuntime
    stub: pb_grpc.InferenceServiceStub
    store: ObjectStore
    metrics: CollectorRegistry

    async def upload(self, name: str, directory: Path, *, uri: str | None = None) -> pb.AdapterRef:
        """Put an adapter directory in the object store; return the reference the registry would give."""
        uri = uri or f"orgs/{ORG}/adapters/{name.replace(':', '-')}"
        for path in directory.iterdir():
            if path.name in ("adapter_config.json", "adapter_model.safetensors"):
                await self.store.put_file(f"{uri}/{path.name}", path)
        return pb.AdapterRef(name=name, uri=uri + "/", base_model="tailor-tiny")

    async def wait_until(self, condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            assert time.monotonic() < deadline, "condition not reached in time"
            await asyncio.sleep(0.01)


@pytest.fixture
def replica_factory(settings_factory: Callable[..., InferenceSettings]) -> Iterator[Callable[..., Any]]:
    """Start replicas with settings overrides: ``async with replica_factory(**overrides) as replica``."""
    import contextlib

    @contextlib.asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[Replica]:
        settings = settings_factory(**overrides)
        registry = CollectorRegistry()
        runtime = build_runtime(settings, metrics_registry=registry)
        registration = ServiceRegistration(
            SERVICE_NAME, pb_grpc.add_InferenceServiceServicer_to_server, InferenceServicer(runtime.service)
        )
        try:
            async with serving(settings, [registration]) as channel:
                yield Replica(
                    runtime, pb_grpc.InferenceServiceStub(channel), open_object_store(settings), registry
                )
        finally:
            await runtime.close()

    yield start


@pytest.fixture
async def replica(replica_factory: Callable[..., Any]) -> AsyncIterator[Replica]:
    async with replica_factory() as started:
        yield started


def chat_request(
    message: str, *, adapter: pb.AdapterRef | None = None, base_model: str = "tailor-tiny", **sampling: Any
) -> pb.GenerateCompletionRequest:
    """A chat completion request; greedy unless the sampling arguments say otherwise."""
    sampling.setdefault("temperature", 0.0)
    return pb.GenerateCompletionRequest(
        base_model=base_model,
        adapter=adapter,
        chat=pb.ChatInput(messages=[pb.ChatMessage(role="user", content=message)]),
        sampling=pb.SamplingParams(**sampling),
    )


@dataclass
class Completion:
    """What a client read from one GenerateCompletion stream."""

    texts: dict[int, str]
    finish_reasons: dict[int, int]
    usage: pb.Usage
    messages: int

    @property
    def text(self) -> str:
        return self.texts[0]


async def complete(
    stub: pb_grpc.InferenceServiceStub, request: pb.GenerateCompletionRequest, *, organization: str = ORG
) -> Completion:
    """Run a generation to its end and gather the stream."""
    texts: dict[int, str] = {}
    finish_reasons: dict[int, int] = {}
    usage = pb.Usage()
    messages = 0
    with as_organization(organization):
        async for response in stub.GenerateCompletion(request):
            messages += 1
            for delta in response.deltas:
                texts[delta.index] = texts.get(delta.index, "") + delta.text
                if delta.finish_reason:
                    assert delta.index not in finish_reasons, "finish_reason sent twice"
                    finish_reasons[delta.index] = delta.finish_reason
            if response.HasField("usage"):
                usage = response.usage
    return Completion(texts, finish_reasons, usage, messages)


async def expect_error(awaitable: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await awaitable
    return raised.value


def copy_adapter(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target
