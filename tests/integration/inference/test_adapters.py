"""The adapter cache through the service: single-flight downloads, LRU eviction, corrupt adapters, tenancy."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any

import grpc
import pytest
import torch
from safetensors.torch import load_file, save_file

from services.common.grpc_client import rpc_error
from tailor.inference.v1 import inference_service_pb2 as pb
from tests.integration.inference.conftest import (
    ALPHA_REPLY,
    BRAVO_REPLY,
    ORG,
    OTHER_ORG,
    AdmissionGate,
    Replica,
    chat_request,
    complete,
    copy_adapter,
    expect_error,
)
from tests.support.grpc_services import as_organization

# One event loop for the session: replicas on the vLLM engine share an engine, whose output task lives on it.
pytestmark = pytest.mark.asyncio(loop_scope="session")

ALPHA = "ft:tailor-tiny:org-a::alpha"
BRAVO = "ft:tailor-tiny:org-a::bravo"


def count_downloads(replica: Replica) -> Counter[str]:
    """Counts object store downloads by key from now on."""
    downloads: Counter[str] = Counter()
    original = replica.runtime.store.get_file

    async def counting_get_file(key: str, path: Any) -> Any:
        downloads[key] += 1
        return await original(key, path)

    replica.runtime.store.get_file = counting_get_file  # type: ignore[method-assign]
    return downloads


async def list_adapters(replica: Replica, organization: str = ORG) -> dict[str, pb.AdapterInfo]:
    with as_organization(organization):
        response = await replica.stub.ListAdapters(pb.ListAdaptersRequest())
    return {info.adapter.name: info for info in response.adapters}


async def test_twenty_concurrent_requests_for_a_cold_adapter_download_and_load_it_once(
    replica: Replica, trained_adapters: dict[str, Path]
) -> None:
    alpha = await replica.upload(ALPHA, trained_adapters[ALPHA_REPLY])
    downloads = count_downloads(replica)
    results = await asyncio.gather(
        *(complete(replica.stub, chat_request(f"question {i}", adapter=alpha)) for i in range(20))
    )
    assert [r.text for r in results] == [ALPHA_REPLY] * 20
    assert set(downloads.values()) == {1} and len(downloads) == 2  # config and weights, once each
    assert (await list_adapters(replica))[ALPHA].state == pb.ADAPTER_STATE_LOADED


async def test_the_least_recently_used_idle_adapter_is_evicted_and_reloads_from_disk(
    replica_factory: Any, trained_adapters: dict[str, Path]
) -> None:
    async with replica_factory(inference_max_loras=1, inference_max_cpu_loras=1) as replica:
        alpha = await replica.upload(ALPHA, trained_adapters[ALPHA_REPLY])
        bravo = await replica.upload(BRAVO, trained_adapters[BRAVO_REPLY])
        downloads = count_downloads(replica)
        assert (await complete(replica.stub, chat_request("hi", adapter=alpha))).text == ALPHA_REPLY
        assert (await complete(replica.stub, chat_request("hi", adapter=bravo))).text == BRAVO_REPLY
        states = {name: info.state for name, info in (await list_adapters(replica)).items()}
        assert states == {ALPHA: pb.ADAPTER_STATE_CACHED, BRAVO: pb.ADAPTER_STATE_LOADED}
        assert (await complete(replica.stub, chat_request("hi", adapter=alpha))).text == ALPHA_REPLY
        assert sum(downloads.values()) == 4, "the reload came from the local cache, not the object store"
        assert list(await list_adapters(replica)) == [ALPHA, BRAVO], "most recently used first"


async def test_an_adapter_evicted_from_disk_is_downloaded_again(
    replica_factory: Any, trained_adapters: dict[str, Path]
) -> None:
    async with replica_factory(
        inference_max_loras=1, inference_max_cpu_loras=1, inference_adapter_cache_max_entries=1
    ) as replica:
        alpha = await replica.upload(ALPHA, trained_adapters[ALPHA_REPLY])
        bravo = await replica.upload(BRAVO, trained_adapters[BRAVO_REPLY])
        downloads = count_downloads(replica)
        for adapter, reply in [(alpha, ALPHA_REPLY), (bravo, BRAVO_REPLY), (alpha, ALPHA_REPLY)]:
            assert (await complete(replica.stub, chat_request("hi", adapter=adapter))).text == reply
        assert sum(downloads.values()) == 6
        assert list(await list_adapters(replica)) == [ALPHA]


async def test_a_busy_adapter_is_not_evicted_a_new_one_waits_for_a_free_slot(
    replica_factory: Any, trained_adapters: dict[str, Path]
) -> None:
    async with replica_factory(inference_max_loras=1, inference_max_cpu_loras=1) as replica:
        alpha = await replica.upload(ALPHA, trained_adapters[ALPHA_REPLY])
        bravo = await replica.upload(BRAVO, trained_adapters[BRAVO_REPLY])
        engine = replica.runtime.engine
        gate = AdmissionGate(engine)
        await gate.shut()
        alpha_call = asyncio.create_task(complete(replica.stub, chat_request("hi", adapter=alpha)))
        await replica.wait_until(lambda: engine.load().waiting == 1)  # alpha is loaded and queued
        bravo_call = asyncio.create_task(complete(replica.stub, chat_request("hi", adapter=bravo)))
        entries = replica.runtime.adapters._entries  # by engine id: organization/name
        await replica.wait_until(lambda: f"{ORG}/{BRAVO}" in entries)
        await asyncio.sleep(0.2)
        adapters = await list_adapters(replica)
        assert adapters[ALPHA].state == pb.ADAPTER_STATE_LOADED and adapters[ALPHA].waiting_requests == 1
        assert adapters[BRAVO].state == pb.ADAPTER_STATE_LOADING and adapters[BRAVO].waiting_requests == 1
        await gate.open_when_waiting(1)
        assert (await alpha_call).text == ALPHA_REPLY
        assert (await bravo_call).text == BRAVO_REPLY


def _corrupt_variants(good: Path, root: Path) -> dict[str, Path]:
    """Broken copies of a good adapter, each wrong in one way."""
    variants: dict[str, Path] = {}

    garbage = copy_adapter(good, root / "garbage")
    (garbage / "adapter_model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not a header")
    variants["not a valid safetensors file"] = garbage

    reshaped = copy_adapter(good, root / "reshaped")
    weights = load_file(reshaped / "adapter_model.safetensors")
    key = next(k for k in weights if k.endswith("q_proj.lora_A.weight"))
    weights[key] = torch.zeros(weights[key].shape[0], weights[key].shape[1] + 1)
    save_file(weights, reshaped / "adapter_model.safetensors")
    variants["the base model needs"] = reshaped

    too_big = copy_adapter(good, root / "too-big")
    config = json.loads((too_big / "adapter_config.json").read_text())
    (too_big / "adapter_config.json").write_text(json.dumps({**config, "r": 64}))
    variants["greater than this replica's max_lora_rank"] = too_big

    foreign = copy_adapter(good, root / "foreign")
    weights = load_file(foreign / "adapter_model.safetensors")
    save_file(
        {k.replace("q_proj", "query_key_value"): v for k, v in weights.items()},
        foreign / "adapter_model.safetensors",
    )
    variants["which the base model has no such layer"] = foreign
    return variants


async def test_a_corrupt_adapter_fails_only_its_own_request_and_leaves_nothing_behind(
    replica: Replica, trained_adapters: dict[str, Path], tmp_path: Path
) -> None:
    alpha = await replica.upload(ALPHA, trained_adapters[ALPHA_REPLY])
    broken = {
        problem: await replica.upload(f"ft:tailor-tiny:org-a::broken-{i}", directory)
        for i, (problem, directory) in enumerate(
            _corrupt_variants(trained_adapters[ALPHA_REPLY], tmp_path).items()
        )
    }
    good_call = asyncio.create_task(
        complete(replica.stub, chat_request("hello", adapter=alpha, max_tokens=20))
    )
    for problem, ref in broken.items():
        error = await expect_error(complete(replica.stub, chat_request("hello", adapter=ref)))
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION, error.details()
        assert problem in error.details() and ref.name in error.details()
        assert rpc_error(error).code == "invalid_adapter"
    assert (await good_call).text == ALPHA_REPLY
    assert list(await list_adapters(replica)) == [ALPHA]
    assert replica.runtime.engine.adapters == {f"{ORG}/{ALPHA}"}  # type: ignore[attr-defined]


async def test_a_missing_adapter_is_not_found(replica: Replica) -> None:
    ghost = pb.AdapterRef(
        name="ft:tailor-tiny:org-a::ghost", uri="orgs/org-a/adapters/ghost/", base_model="tailor-tiny"
    )
    error = await expect_error(complete(replica.stub, chat_request("hi", adapter=ghost)))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert rpc_error(error).code == "model_not_found" and ghost.name in error.details()


async def test_another_organization_cannot_use_or_see_an_adapter(
    replica: Replica, trained_adapters: dict[str, Path]
) -> None:
    alpha = await replica.upload(ALPHA, trained_adapters[ALPHA_REPLY])
    assert (await complete(replica.stub, chat_request("hi", adapter=alpha))).text == ALPHA_REPLY
    error = await expect_error(
        complete(replica.stub, chat_request("hi", adapter=alpha), organization=OTHER_ORG)
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert await list_adapters(replica, OTHER_ORG) == {}
    with as_organization(OTHER_ORG):
        assert not (await replica.stub.UnloadAdapter(pb.UnloadAdapterRequest(name=ALPHA))).unloaded
    assert ALPHA in await list_adapters(replica)


async def test_load_then_unload_an_adapter(replica: Replica, trained_adapters: dict[str, Path]) -> None:
    alpha = await replica.upload(ALPHA, trained_adapters[ALPHA_REPLY])
    with as_organization(ORG):
        loaded = await replica.stub.LoadAdapter(pb.LoadAdapterRequest(adapter=alpha))
        assert loaded.adapter.state == pb.ADAPTER_STATE_LOADED and loaded.adapter.adapter.name == ALPHA
        assert (await replica.stub.UnloadAdapter(pb.UnloadAdapterRequest(name=ALPHA))).unloaded
        assert not (await replica.stub.UnloadAdapter(pb.UnloadAdapterRequest(name=ALPHA))).unloaded
    assert await list_adapters(replica) == {}
    assert replica.runtime.engine.adapters == set()  # type: ignore[attr-defined]
    # A later request (the registry would not send one for a deleted model) starts afresh.
    assert (await complete(replica.stub, chat_request("hi", adapter=alpha))).text == ALPHA_REPLY


async def test_an_adapter_the_registry_describes_otherwise_is_refused_before_the_engine(
    replica: Replica, trained_adapters: dict[str, Path]
) -> None:
    config = json.loads((trained_adapters[ALPHA_REPLY] / "adapter_config.json").read_text())
    adapted = sorted(config["target_modules"])

    unknown = await replica.upload(
        "ft:tailor-tiny:org-a::unknown-modules",
        trained_adapters[ALPHA_REPLY],
        target_modules=("query_key_value",),
    )
    downloads = count_downloads(replica)
    error = await expect_error(complete(replica.stub, chat_request("hi", adapter=unknown)))
    assert rpc_error(error).code == "invalid_adapter" and "query_key_value" in error.details()
    assert not downloads, "refused from the registry's description, before any download"

    mismatched = await replica.upload(
        "ft:tailor-tiny:org-a::mismatched", trained_adapters[ALPHA_REPLY], target_modules=tuple(adapted[:1])
    )
    error = await expect_error(complete(replica.stub, chat_request("hi", adapter=mismatched)))
    assert rpc_error(error).code == "invalid_adapter" and "registry recorded" in error.details()

    described = await replica.upload(ALPHA, trained_adapters[ALPHA_REPLY], target_modules=tuple(adapted))
    assert (await complete(replica.stub, chat_request("hi", adapter=described))).text == ALPHA_REPLY
    assert list(await list_adapters(replica)) == [ALPHA]
