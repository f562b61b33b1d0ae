"""Builds the inference service: the runtime (base model, engine, adapter cache) and its gRPC server.

Startup resolves the configured base model (building tailor-tiny on first use), loads its
tokenizer, picks the engine (``TAILOR_INFERENCE_ENGINE``), wires the adapter cache to
the object store, and opens a channel to the trainer's model registry
(``TAILOR_TRAINER_ADDR``), which says what each organization's model names stand for: a
request's ``AdapterRef`` is read for its name only. The servicer below only converts
between protobuf messages and the plain values of :mod:`services.inference.service`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
import dataclasses
from dataclasses import dataclass
from typing import Any

import grpc
import structlog
from prometheus_client import REGISTRY, CollectorRegistry

from services.common.base_models import ModelConfig, missing_from_hub_cache, resolve_base_model
from services.common.errors import FailedPrecondition
from services.common.grpc_client import open_channel
from services.common.grpc_server import GrpcServer, ServiceRegistration
from services.common.object_store import ObjectStore, open_object_store
from services.inference.adapter_validation import BaseModelLayout
from services.inference.adapters import AdapterCache, AdapterState
from services.inference.config import InferenceSettings
from services.inference.engine import Engine, TokenLogprob, detect_engine_kind
from services.inference.metrics import VLLMCompatibleCollector
from services.inference.registry import RESOLVE_MODEL, RegistryResolver
from services.inference.rendering import PromptRenderer
from services.inference.request_tracker import RequestTracker
from services.inference.service import AdapterReport, Conversation, InferenceService, SamplingRequest
from tailor.inference.v1 import inference_service_pb2 as pb
from tailor.inference.v1 import inference_service_pb2_grpc as pb_grpc
from tailor.trainer.v1 import model_registry_service_pb2_grpc as registry_grpc

log = structlog.get_logger("tailor.inference")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["InferenceService"].full_name
_FINISH_REASONS = {
    None: pb.FINISH_REASON_UNSPECIFIED,
    "stop": pb.FINISH_REASON_STOP,
    "length": pb.FINISH_REASON_LENGTH,
    "tool_calls": pb.FINISH_REASON_TOOL_CALLS,
}
_ADAPTER_STATES = {
    AdapterState.LOADING: pb.ADAPTER_STATE_LOADING,
    AdapterState.LOADED: pb.ADAPTER_STATE_LOADED,
    AdapterState.CACHED: pb.ADAPTER_STATE_CACHED,
}


@dataclass
class InferenceRuntime:
    """Everything a running inference replica holds, closed together."""

    settings: InferenceSettings
    store: ObjectStore
    engine: Engine
    adapters: AdapterCache
    service: InferenceService
    metrics_registry: CollectorRegistry | None
    collector: VLLMCompatibleCollector | None
    # The channel to the model registry, when this runtime opened it (closed with it).
    registry_channel: grpc.aio.Channel | None = None

    async def close(self) -> None:
        if self.collector is not None and self.metrics_registry is not None:
            self.metrics_registry.unregister(self.collector)
        await self.adapters.close()
        if self.registry_channel is not None:
            await self.registry_channel.close()
        await self.engine.close()
        await self.store.close()


def build_runtime(
    settings: InferenceSettings,
    *,
    store: ObjectStore | None = None,
    metrics_registry: CollectorRegistry | None = REGISTRY,
    engine: Engine | None = None,
    registry: registry_grpc.ModelRegistryServiceStub | None = None,
) -> InferenceRuntime:
    """Load the base model into the configured engine and wire the adapter cache (blocking: run at startup).

    ``registry`` is the model registry adapters are resolved through; None opens a channel
    to the trainer at ``TAILOR_TRAINER_ADDR`` (connected on first use).

    ``metrics_registry`` receives the vLLM-style gauges when the hf engine runs (vLLM exports
    its own); None leaves them out. ``engine``, already started on the same base model,
    is used instead of starting one (tests share a vLLM engine between replicas).
    """
    from transformers import AutoConfig, AutoTokenizer

    base = resolve_base_model(settings.inference_base_model, settings)
    missing = missing_from_hub_cache(base)
    if missing is not None:
        raise FailedPrecondition(f"Cannot serve base model `{base.name}`: {missing}.")
    tokenizer = AutoTokenizer.from_pretrained(base.location, revision=base.revision)
    if engine is None:
        engine = build_engine(settings, base.location, base.revision, tokenizer)
    kind = engine.kind
    log.info("engine ready", engine=kind, base_model=base.name, max_model_len=engine.max_model_len)

    store = store or open_object_store(settings)
    config = AutoConfig.from_pretrained(base.location, revision=base.revision)
    layout = BaseModelLayout.of_config(config)
    # How the model writes tool calls (the entry's word, the built-in's, else its family's), with
    # the family read from the config just loaded: an id downloaded on first use had none before.
    tool_call_format = dataclasses.replace(base, config=ModelConfig.of(config.to_dict())).tool_call_format
    log.info("tool calls", base_model=base.name, tool_call_format=tool_call_format)
    adapters = AdapterCache(
        store,
        engine,
        layout,
        served_base_model=base.name,
        cache_dir=settings.adapter_cache_dir,
        max_lora_rank=settings.max_lora_rank,
        max_disk_entries=settings.inference_adapter_cache_max_entries,
        max_disk_bytes=settings.inference_adapter_cache_max_mib * 2**20,
    )
    registry_channel = None
    if registry is None:
        registry_channel = open_channel(
            settings.trainer_addr, settings, idempotent_methods=[RESOLVE_MODEL], audience="trainer"
        )
        registry = registry_grpc.ModelRegistryServiceStub(registry_channel)
    resolver = RegistryResolver(registry, ttl_s=settings.inference_adapter_resolution_ttl_s)
    tracker = RequestTracker()
    service = InferenceService(
        base_model=base.name,
        engine=engine,
        renderer=PromptRenderer(tokenizer, base.spec.chat_template),
        adapters=adapters,
        tracker=tracker,
        tool_call_format=tool_call_format,
        resolver=resolver,
    )
    collector = None
    if kind == "hf" and metrics_registry is not None:
        collector = VLLMCompatibleCollector(
            tracker.snapshot, engine.load, model_name=base.name, max_lora=settings.inference_max_loras
        )
        metrics_registry.register(collector)
    return InferenceRuntime(
        settings, store, engine, adapters, service, metrics_registry, collector, registry_channel
    )


def build_engine(settings: InferenceSettings, location: str, revision: str | None, tokenizer: Any) -> Engine:
    """Start the engine ``TAILOR_INFERENCE_ENGINE`` picks on the base model at ``location``."""
    kind = detect_engine_kind(settings.inference_engine)
    if kind == "vllm":
        from services.inference.vllm_engine import VLLMEngine

        return VLLMEngine(
            location,
            served_model_name=settings.inference_base_model,
            revision=revision,
            dtype=settings.inference_dtype,
            max_batch_size=settings.inference_max_batch_size,
            max_loras=settings.inference_max_loras,
            max_cpu_loras=settings.inference_max_cpu_loras,
            max_lora_rank=settings.max_lora_rank,
            max_model_len=settings.inference_max_model_len,
            gpu_memory_utilization=settings.inference_gpu_memory_utilization,
            enforce_eager=settings.inference_enforce_eager,
            cpu_kvcache_gib=settings.inference_vllm_cpu_kvcache_gib,
            cpu_threads=settings.inference_vllm_cpu_threads,
            tokenizer=tokenizer,
        )
    import torch

    from services.inference.hf_engine import HFEngine

    if settings.inference_torch_threads:
        torch.set_num_threads(settings.inference_torch_threads)
    return HFEngine.from_pretrained(
        location,
        tokenizer,
        revision=revision,
        device=settings.inference_device,
        dtype=settings.inference_dtype,
        max_batch_size=settings.inference_max_batch_size,
        max_loras=settings.inference_max_loras,
        max_lora_rank=settings.max_lora_rank,
        max_model_len=settings.inference_max_model_len,
    )


class InferenceServicer(pb_grpc.InferenceServiceServicer):
    """InferenceService over gRPC: converts messages and delegates to :class:`InferenceService`."""

    def __init__(self, service: InferenceService) -> None:
        self.service = service

    async def GenerateCompletion(
        self, request: pb.GenerateCompletionRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.GenerateCompletionResponse]:
        """Stream a completion: text deltas per choice, then a last message with usage.

        Cancelling the call or passing its deadline aborts generation and frees the slot.
        """
        which = request.WhichOneof("input")
        generation = self.service.generate(
            base_model=request.base_model,
            # The model name only: what it stands for is the registry's word, never the caller's.
            adapter=request.adapter.name if request.HasField("adapter") else None,
            conversation=_conversation(request.chat) if which == "chat" else None,
            prompt=request.prompt if which == "prompt" else None,
            sampling=_sampling(request.sampling),
        )
        # aclosing: however this handler ends, the generation is closed now (and aborted if unfinished).
        async with contextlib.aclosing(generation) as chunks:
            async for chunk in chunks:
                response = pb.GenerateCompletionResponse(
                    deltas=[
                        pb.ChoiceDelta(
                            index=d.index,
                            text=d.text,
                            finish_reason=_FINISH_REASONS[d.finish_reason],
                            tool_calls=[
                                pb.ToolCall(id=call.id, name=call.name, arguments=call.arguments)
                                for call in d.tool_calls
                            ],
                            logprobs=[self._token_logprob(logprob) for logprob in d.logprobs],
                        )
                        for d in chunk.deltas
                    ]
                )
                if chunk.usage is not None:
                    response.usage.prompt_tokens = chunk.usage.prompt_tokens
                    response.usage.completion_tokens = chunk.usage.completion_tokens
                yield response

    def _token_logprob(self, logprob: TokenLogprob) -> pb.TokenLogprob:
        text = self.service.token_text
        return pb.TokenLogprob(
            token=text(logprob.token_id),
            logprob=logprob.logprob,
            top_logprobs=[pb.TopLogprob(token=text(token_id), logprob=value) for token_id, value in logprob.top],
        )

    async def LoadAdapter(
        self, request: pb.LoadAdapterRequest, context: grpc.aio.ServicerContext
    ) -> pb.LoadAdapterResponse:
        """Fetch and load the caller's adapter ahead of use; loading a loaded adapter only marks it used.

        Only ``adapter.name`` is read: the registry resolves it in the caller's organization.
        """
        report = await self.service.load_adapter(request.adapter.name)
        return pb.LoadAdapterResponse(adapter=_adapter_info(report))

    async def UnloadAdapter(
        self, request: pb.UnloadAdapterRequest, context: grpc.aio.ServicerContext
    ) -> pb.UnloadAdapterResponse:
        """Take an adapter out of service (its model was deleted); in-flight requests finish first."""
        return pb.UnloadAdapterResponse(unloaded=await self.service.unload_adapter(request.name))

    async def ListAdapters(
        self, request: pb.ListAdaptersRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListAdaptersResponse:
        """The caller organization's adapters in this replica, most recently used first."""
        return pb.ListAdaptersResponse(
            adapters=[_adapter_info(report) for report in self.service.list_adapters()]
        )

    async def GetReplicaInfo(
        self, request: pb.GetReplicaInfoRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetReplicaInfoResponse:
        """What this replica serves: its base model and engine. Answered without an organization
        (it is no tenant's data): the gateway asks at discovery, outside any request."""
        return pb.GetReplicaInfoResponse(base_model=self.service.base_model, engine=self.service.engine.kind)


class InferenceServer(GrpcServer):
    """The gRPC server of one replica; stopping it also stops the engine and the cache."""

    def __init__(self, runtime: InferenceRuntime) -> None:
        registration = ServiceRegistration(
            SERVICE_NAME, pb_grpc.add_InferenceServiceServicer_to_server, InferenceServicer(runtime.service)
        )
        super().__init__(
            runtime.settings,
            runtime.settings.inference_listen,
            [registration],
            readiness_checks=[runtime.store.check, runtime.engine.check_health],
        )
        self.runtime = runtime

    async def stop(self) -> None:
        await super().stop()
        await self.runtime.close()


def build_server(settings: InferenceSettings) -> GrpcServer:
    """The inference replica's server: loads the base model and the engine first.

    A base model this replica cannot load (a Hugging Face id missing from an offline cache)
    ends the process with a message saying so, not a traceback.
    """
    try:
        runtime = build_runtime(settings)
    except FailedPrecondition as error:
        raise SystemExit(f"inference: {error.message}") from None
    return InferenceServer(runtime)


def _conversation(chat: pb.ChatInput) -> Conversation:
    return Conversation([_message(m) for m in chat.messages], chat.tools_json)


def _message(message: pb.ChatMessage) -> dict[str, Any]:
    """A chat message in the OpenAI shape chat templates expect."""
    rendered: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.name:
        rendered["name"] = message.name
    if message.tool_calls:
        rendered["tool_calls"] = [
            {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}
            for call in message.tool_calls
        ]
    if message.tool_call_id:
        rendered["tool_call_id"] = message.tool_call_id
    return rendered


def _sampling(params: pb.SamplingParams) -> SamplingRequest:
    def given(field_name: str) -> Any:
        return getattr(params, field_name) if params.HasField(field_name) else None

    return SamplingRequest(
        temperature=given("temperature"),
        top_p=given("top_p"),
        max_tokens=given("max_tokens"),
        stop=tuple(params.stop),
        seed=given("seed"),
        n=given("n"),
        frequency_penalty=given("frequency_penalty"),
        presence_penalty=given("presence_penalty"),
        logit_bias=dict(params.logit_bias),
        top_logprobs=given("top_logprobs"),
    )


def _adapter_info(report: AdapterReport) -> pb.AdapterInfo:
    ref = report.status.ref
    return pb.AdapterInfo(
        adapter=pb.AdapterRef(
            name=ref.name,
            uri=ref.uri,
            base_model=ref.base_model,
            lora_rank=ref.lora_rank,
            target_modules=ref.target_modules,
        ),
        state=_ADAPTER_STATES[report.status.state],
        last_used_at=int(report.status.last_used_at),
        running_requests=report.running_requests,
        waiting_requests=report.waiting_requests,
    )
