"""The replica as `python -m services.inference` builds it: health, the service, metrics, clean stop.

On the vLLM side the engine is chosen by ``auto``: vLLM's CPU build is installed (the dev
profile), so auto must pick it on this CPU-only machine.
"""

from __future__ import annotations

from typing import Any

import psutil
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import REGISTRY

from services.common.grpc_client import open_channel
from services.inference.server import SERVICE_NAME, build_server
from tailor.inference.v1 import inference_service_pb2 as pb
from tailor.inference.v1 import inference_service_pb2_grpc as pb_grpc
from tests.integration.inference.conftest import VLLMEngines, chat_request, complete, require_vllm


@pytest.mark.asyncio(loop_scope="session")
async def test_build_server_serves_health_generation_and_metrics(
    settings_factory: Any, engine_kind: str, vllm_engines: VLLMEngines
) -> None:
    if engine_kind == "vllm":
        require_vllm()
        vllm_engines.release()  # this test starts its own: one vLLM engine at a time
        settings = settings_factory(inference_listen="127.0.0.1:0", inference_engine="auto")
    else:
        settings = settings_factory(inference_listen="127.0.0.1:0")
    already_running = set(psutil.Process().children(recursive=True))
    server = build_server(settings)
    assert server.runtime.engine.kind == engine_kind
    # vLLM's engine core and its worker; multiprocessing's resource tracker, which it may also
    # start, lives as long as this process by design
    engine_processes = {
        process
        for process in set(psutil.Process().children(recursive=True)) - already_running
        if "multiprocessing.resource_tracker" not in " ".join(process.cmdline())
    }
    port = await server.start()
    channel = open_channel(f"127.0.0.1:{port}", settings)
    try:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", SERVICE_NAME):
            status = (await health.Check(health_pb2.HealthCheckRequest(service=service))).status
            assert status == health_pb2.HealthCheckResponse.SERVING
        completion = await complete(pb_grpc.InferenceServiceStub(channel), chat_request("hi", max_tokens=3))
        assert completion.usage.completion_tokens == 3
        # what it serves, said to a caller without an organization (the gateway at discovery)
        info = await pb_grpc.InferenceServiceStub(channel).GetReplicaInfo(pb.GetReplicaInfoRequest())
        assert (info.base_model, info.engine) == (settings.inference_base_model, engine_kind)
        assert (
            REGISTRY.get_sample_value(
                "vllm:num_requests_running", {"model_name": "tailor-tiny", "engine": "0"}
            )
            == 0
        )
    finally:
        await channel.close()
        await server.stop()
    assert (
        REGISTRY.get_sample_value("vllm:num_requests_running", {"model_name": "tailor-tiny", "engine": "0"})
        is None
    )
    if engine_kind == "hf":
        assert not server.runtime.engine._thread.is_alive()  # type: ignore[attr-defined]
    else:
        assert engine_processes, "vLLM started no engine process"
        _, alive = psutil.wait_procs(engine_processes, timeout=30)
        assert not alive, f"vLLM's engine processes outlived the server: {[p.cmdline() for p in alive]}"
