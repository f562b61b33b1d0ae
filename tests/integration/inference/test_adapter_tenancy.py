"""Adapters belong to organizations: the probes of issue 15, replayed against a real replica.

Each probe goes straight to the replica's gRPC port, as a caller that got past the gateway
would: it names another organization's adapter location, or squats another organization's
model name. The replica resolves names itself, in the caller's organization, through the
model registry (a stand-in of its contract, and once the trainer's own servicer on SQLite),
and keeps adapters by (organization, name): each probe is refused as a missing model with
nothing loaded, and the owner's model keeps working.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio

from services.common.base_models import BaseModelSpec
from services.common.database import sqlite_url
from services.common.grpc_client import rpc_error
from services.trainer.config import TrainerSettings
from services.trainer.records import TrainerRecords
from services.trainer.registry import CHECKPOINT, ModelRegistry, checkpoint_model_name, register_model
from services.trainer.server import ModelRegistryServicer
from tailor.inference.v1 import inference_service_pb2 as pb
from tests.integration.inference.conftest import (
    ALPHA_REPLY,
    BRAVO_REPLY,
    ORG,
    OTHER_ORG,
    Replica,
    chat_request,
    complete,
    expect_error,
)
from tests.integration.inference.test_adapters import count_downloads, list_adapters
from tests.support.grpc_services import as_organization

pytestmark = pytest.mark.asyncio(loop_scope="session")

ALPHA = "ft:tailor-tiny:org-a::alpha:ftjob-a1"


def assert_model_not_found(error: grpc.aio.AioRpcError, name: str) -> None:
    assert error.code() == grpc.StatusCode.NOT_FOUND, error.details()
    assert rpc_error(error).code == "model_not_found" and name in error.details()


def engine_ids(replica: Replica) -> set[str]:
    return set(replica.runtime.engine.adapters)  # type: ignore[attr-defined]


async def load(replica: Replica, organization: str, ref: pb.AdapterRef) -> pb.LoadAdapterResponse:
    with as_organization(organization):
        return await replica.stub.LoadAdapter(pb.LoadAdapterRequest(adapter=ref))


async def unload(replica: Replica, organization: str, name: str) -> bool:
    with as_organization(organization):
        return (await replica.stub.UnloadAdapter(pb.UnloadAdapterRequest(name=name))).unloaded


async def test_a_callers_adapter_location_is_never_trusted(
    replica: Replica, trained_adapters: dict[str, Path]
) -> None:
    alpha = await replica.upload(ALPHA, trained_adapters[ALPHA_REPLY])
    downloads = count_downloads(replica)
    # org-b names org-a's adapter location under a name of its own, then under org-a's name.
    for name in ("ft:stolen-by-b:1", ALPHA):
        stolen = pb.AdapterRef(name=name, uri=alpha.uri, base_model="tailor-tiny")
        error = await expect_error(
            complete(replica.stub, chat_request("hi", adapter=stolen), organization=OTHER_ORG)
        )
        assert_model_not_found(error, name)
    assert not downloads and engine_ids(replica) == set(), "nothing was fetched or loaded"
    assert await list_adapters(replica, OTHER_ORG) == {}
    # org-b's own model with org-a's location in the request: the registry's location wins.
    own = await replica.upload(
        "ft:tailor-tiny:org-b::bravo", trained_adapters[BRAVO_REPLY], organization=OTHER_ORG
    )
    forged = pb.AdapterRef(name=own.name, uri=alpha.uri, base_model="tailor-tiny")
    answer = await complete(replica.stub, chat_request("hi", adapter=forged), organization=OTHER_ORG)
    assert answer.text == BRAVO_REPLY
    assert downloads[f"{alpha.uri}adapter_model.safetensors"] == 0


async def test_another_organizations_model_name_cannot_be_squatted(
    replica: Replica, trained_adapters: dict[str, Path]
) -> None:
    alpha = await replica.upload(ALPHA, trained_adapters[ALPHA_REPLY])
    # org-b's own (valid) adapter files, under org-a's model name.
    squat = await replica.upload(
        "ft:tailor-tiny:org-b::squat", trained_adapters[BRAVO_REPLY], organization=OTHER_ORG
    )
    before = pb.AdapterRef(name=ALPHA, uri=squat.uri, base_model="tailor-tiny")
    assert_model_not_found(await expect_error(load(replica, OTHER_ORG, before)), ALPHA)
    assert engine_ids(replica) == set() and await list_adapters(replica, OTHER_ORG) == {}
    # org-a's model is untouched: it serves, and org-a can unload it.
    assert (await complete(replica.stub, chat_request("hi", adapter=alpha))).text == ALPHA_REPLY
    # Once org-a's adapter is loaded, org-b can neither load, unload nor use it by name.
    assert_model_not_found(await expect_error(load(replica, OTHER_ORG, before)), ALPHA)
    assert not await unload(replica, OTHER_ORG, ALPHA)
    error = await expect_error(
        complete(replica.stub, chat_request("hi", adapter=before), organization=OTHER_ORG)
    )
    assert_model_not_found(error, ALPHA)
    assert (await complete(replica.stub, chat_request("hi", adapter=alpha))).text == ALPHA_REPLY
    assert list(await list_adapters(replica)) == [ALPHA]
    assert await unload(replica, ORG, ALPHA)
    assert engine_ids(replica) == set()


async def test_two_organizations_models_of_the_same_name_are_two_adapters(
    replica: Replica, trained_adapters: dict[str, Path]
) -> None:
    name = "ft:tailor-tiny:shared-name"
    mine = await replica.upload(name, trained_adapters[ALPHA_REPLY])
    theirs = await replica.upload(name, trained_adapters[BRAVO_REPLY], organization=OTHER_ORG)
    assert mine.uri != theirs.uri
    answers = await asyncio.gather(
        *(
            complete(
                replica.stub,
                chat_request(f"hi {i}", adapter=mine if i % 2 else theirs),
                organization=ORG if i % 2 else OTHER_ORG,
            )
            for i in range(6)
        )
    )
    assert [a.text for a in answers] == [BRAVO_REPLY, ALPHA_REPLY] * 3
    assert engine_ids(replica) == {f"{ORG}/{name}", f"{OTHER_ORG}/{name}"}
    # Each organization lists its own, with its own location.
    assert {n: i.adapter.uri for n, i in (await list_adapters(replica)).items()} == {name: mine.uri}
    assert {n: i.adapter.uri for n, i in (await list_adapters(replica, OTHER_ORG)).items()} == {
        name: theirs.uri
    }
    # Unloading is per organization too.
    assert await unload(replica, OTHER_ORG, name)
    assert engine_ids(replica) == {f"{ORG}/{name}"}
    assert (await complete(replica.stub, chat_request("hi", adapter=mine))).text == ALPHA_REPLY
    assert (
        await complete(replica.stub, chat_request("hi", adapter=theirs), organization=OTHER_ORG)
    ).text == (BRAVO_REPLY)


async def test_a_model_deleted_in_the_registry_stops_being_served_within_the_ttl(
    replica_factory: Callable[..., Any], trained_adapters: dict[str, Path]
) -> None:
    async with replica_factory(inference_adapter_resolution_ttl_s=0.3) as replica:
        alpha = await replica.upload(ALPHA, trained_adapters[ALPHA_REPLY])
        assert (await complete(replica.stub, chat_request("hi", adapter=alpha))).text == ALPHA_REPLY
        assert (await complete(replica.stub, chat_request("hi", adapter=alpha))).text == ALPHA_REPLY
        assert replica.registry.calls == [(ORG, ALPHA)], "resolved once within the TTL"
        replica.registry.delete(ORG, ALPHA)  # no UnloadAdapter reached this replica
        await asyncio.sleep(0.4)
        error = await expect_error(complete(replica.stub, chat_request("hi", adapter=alpha)))
        assert_model_not_found(error, ALPHA)
        assert engine_ids(replica) == set() and await list_adapters(replica) == {}


@pytest_asyncio.fixture(loop_scope="session")
async def trainer_registry(tmp_path: Path, tailor_tiny_dir: Path) -> AsyncIterator[ModelRegistry]:
    """The trainer's own model registry, on SQLite in the test's directory."""
    settings = TrainerSettings(
        data_dir=tmp_path / "trainer",
        base_models={"tailor-tiny": BaseModelSpec(source=str(tailor_tiny_dir))},
        trainer_database_url=sqlite_url(tmp_path / "trainer" / "trainer.db"),
    )
    records = TrainerRecords.open(settings)
    await records.create_schema()
    yield ModelRegistry(settings, records)
    await records.close()


async def test_the_probes_against_the_trainers_own_registry(
    replica_factory: Callable[..., Any], trained_adapters: dict[str, Path], trainer_registry: ModelRegistry
) -> None:
    async with replica_factory(registry_servicer=ModelRegistryServicer(trainer_registry)) as replica:
        # What a succeeded job of org-a leaves: a checkpoint registered with its adapter's location.
        uri = f"orgs/{ORG}/jobs/ftjob-a1/checkpoints/step-10/adapter/"
        await replica.upload("unused", trained_adapters[ALPHA_REPLY], uri=uri.rstrip("/"))
        checkpoint = checkpoint_model_name(ALPHA, 10)
        async with trainer_registry._records.write() as session:
            register_model(
                session,
                name=checkpoint,
                kind=CHECKPOINT,
                organization_id=ORG,
                base_model="tailor-tiny",
                adapter_uri=uri,
                job_id="ftjob-a1",
                lora_rank=8,
                step_number=10,
            )
        downloads = count_downloads(replica)
        stolen = pb.AdapterRef(name="ft:stolen-by-b:1", uri=uri, base_model="tailor-tiny")
        error = await expect_error(
            complete(replica.stub, chat_request("hi", adapter=stolen), organization=OTHER_ORG)
        )
        assert_model_not_found(error, stolen.name)
        squat = pb.AdapterRef(name=checkpoint, uri=uri, base_model="tailor-tiny")
        assert_model_not_found(await expect_error(load(replica, OTHER_ORG, squat)), checkpoint)
        assert not downloads and engine_ids(replica) == set()
        mine = pb.AdapterRef(name=checkpoint)  # the name is all a caller need send
        assert (await complete(replica.stub, chat_request("hi", adapter=mine))).text == ALPHA_REPLY
        assert list(await list_adapters(replica)) == [checkpoint]
        assert await list_adapters(replica, OTHER_ORG) == {}
        assert not await unload(replica, OTHER_ORG, checkpoint)
        assert await unload(replica, ORG, checkpoint)
