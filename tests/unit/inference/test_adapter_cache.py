"""The adapter cache with a stand-in engine: single flight, LRU in engine and on disk, unload, failures."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from services.common.errors import FailedPrecondition, InvalidArgument, NotFound
from services.common.object_store import FilesystemObjectStore
from services.inference.adapter_validation import BaseModelLayout
from services.inference.adapters import AdapterCache, AdapterRef, AdapterState, engine_adapter_id
from services.inference.engine import ChoiceDelta, Engine, EngineLoad, GenerationRequest

LAYOUT = BaseModelLayout(linear={"model.layers.0.self_attn.q_proj": (16, 16)}, embedding={})


class StandInEngine(Engine):
    """Records adapter loads and removals; ``gate`` (when set) holds loads until opened."""

    kind = "hf"
    max_model_len = 128
    vocab_size = 1024

    def __init__(self, capacity: int) -> None:
        self.adapter_capacity = capacity
        self.loaded: set[str] = set()
        self.events: list[tuple[str, str]] = []
        self.refuse: set[str] = set()
        self.gate: asyncio.Event | None = None

    async def add_adapter(self, name: str, directory: Path) -> None:
        assert (directory / "adapter_model.safetensors").is_file()
        if self.gate is not None:
            await self.gate.wait()
        if name in self.refuse:
            raise FailedPrecondition(f"adapter `{name}` could not be loaded: broken")
        assert len(self.loaded) < self.adapter_capacity, "the cache overfilled the engine"
        self.loaded.add(name)
        self.events.append(("add", name))

    async def remove_adapter(self, name: str) -> None:
        self.loaded.discard(name)
        self.events.append(("remove", name))

    async def generate(self, request: GenerationRequest) -> AsyncIterator[list[ChoiceDelta]]:
        raise NotImplementedError
        yield []

    async def abort(self, request_id: str) -> None: ...

    def load(self) -> EngineLoad:
        return EngineLoad(0, 0)

    async def check_health(self) -> None: ...

    async def close(self) -> None: ...


def eid(ref: AdapterRef, organization: str = "o") -> str:
    """The adapter's id in the engine: its organization's and its name."""
    return engine_adapter_id(organization, ref.name)


class Fixture:
    def __init__(self, tmp_path: Path, capacity: int = 2, **limits: Any) -> None:
        self.tmp_path = tmp_path
        self.store = FilesystemObjectStore(tmp_path / "objects")
        self.engine = StandInEngine(capacity)
        self.downloads: Counter[str] = Counter()
        original = self.store.get_file

        async def counting_get_file(key: str, path: Any) -> Any:
            self.downloads[key] += 1
            return await original(key, path)

        self.store.get_file = counting_get_file  # type: ignore[method-assign]
        self.cache = AdapterCache(
            self.store,
            self.engine,
            LAYOUT,
            served_base_model="tailor-tiny",
            cache_dir=tmp_path / "cache",
            max_lora_rank=16,
            max_disk_entries=limits.get("max_disk_entries", 10),
            max_disk_bytes=limits.get("max_disk_bytes", 1 << 30),
        )

    async def adapter(self, name: str, *, weights: dict[str, torch.Tensor] | None = None) -> AdapterRef:
        uri = f"orgs/o/adapters/{name}"
        local = self.tmp_path / "src" / name
        local.mkdir(parents=True)
        config = {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q_proj"]}
        (local / "adapter_config.json").write_text(json.dumps(config))
        prefix = "base_model.model.model.layers.0.self_attn.q_proj"
        weights = weights or {
            f"{prefix}.lora_A.weight": torch.zeros(4, 16),
            f"{prefix}.lora_B.weight": torch.zeros(16, 4),
        }
        save_file(weights, local / "adapter_model.safetensors")
        for path in local.iterdir():
            await self.store.put_file(f"{uri}/{path.name}", path)
        return AdapterRef(
            name=f"ft:tailor-tiny:o::{name}", uri=uri + "/", base_model="tailor-tiny", lora_rank=4
        )

    async def use_once(self, ref: AdapterRef, organization: str = "o") -> None:
        async with self.cache.use(ref, organization):
            pass

    def states(self, organization: str = "o") -> dict[str, AdapterState]:
        return {status.ref.name.rsplit(":", 1)[1]: status.state for status in self.cache.list(organization)}


async def test_concurrent_requests_for_a_cold_adapter_share_one_download_and_load(tmp_path: Path) -> None:
    f = Fixture(tmp_path)
    ref = await f.adapter("a")
    f.engine.gate = asyncio.Event()
    users = [asyncio.create_task(f.use_once(ref)) for _ in range(10)]
    await asyncio.sleep(0.05)
    assert f.states() == {"a": AdapterState.LOADING}
    f.engine.gate.set()
    await asyncio.gather(*users)
    assert f.engine.events == [("add", eid(ref))]
    assert set(f.downloads.values()) == {1}
    assert f.states() == {"a": AdapterState.LOADED}


async def test_a_cancelled_first_request_does_not_cancel_the_load_for_the_others(tmp_path: Path) -> None:
    f = Fixture(tmp_path)
    ref = await f.adapter("a")
    f.engine.gate = asyncio.Event()
    first = asyncio.create_task(f.use_once(ref))
    await asyncio.sleep(0.02)
    second = asyncio.create_task(f.use_once(ref))
    await asyncio.sleep(0.02)
    first.cancel()
    f.engine.gate.set()
    await second
    assert first.cancelled() and f.engine.loaded == {eid(ref)}


async def test_organizations_never_share_evict_or_unload_each_others_adapters(tmp_path: Path) -> None:
    f = Fixture(tmp_path)
    ref = await f.adapter("a")
    await f.use_once(ref, "o")
    # Nothing of "o"'s is visible to "other", nor can "other" unload it.
    assert f.cache.list("other") == [] and not await f.cache.unload(ref.name, "other")
    # The same name in "other" (as its own registry resolution) is another adapter: its own
    # engine id, download and directory; "o"'s stays loaded and answers to "o" only.
    other = await f.adapter("a-other")
    same_name = AdapterRef(ref.name, other.uri, "tailor-tiny", lora_rank=4)
    await f.use_once(same_name, "other")
    assert f.engine.loaded == {eid(ref, "o"), eid(ref, "other")}
    assert f.downloads[f"{ref.uri}adapter_model.safetensors"] == 1
    assert f.downloads[f"{other.uri}adapter_model.safetensors"] == 1
    assert len(list((tmp_path / "cache").iterdir())) == 2
    assert [s.ref.uri for s in f.cache.list("other")] == [other.uri]
    assert await f.cache.unload(ref.name, "other")
    assert f.engine.loaded == {eid(ref, "o")} and [s.ref.uri for s in f.cache.list("o")] == [ref.uri]


async def test_the_least_recently_used_idle_adapter_makes_room(tmp_path: Path) -> None:
    f = Fixture(tmp_path, capacity=2)
    a, b, c = [await f.adapter(n) for n in "abc"]
    await f.use_once(a)
    await f.use_once(b)
    await f.use_once(a)  # b is now the least recently used
    await f.use_once(c)
    assert f.engine.loaded == {eid(a), eid(c)}
    assert f.states() == {"c": AdapterState.LOADED, "a": AdapterState.LOADED, "b": AdapterState.CACHED}
    await f.use_once(b)
    assert sum(f.downloads.values()) == 6, "b came back from the local disk"


async def test_an_adapter_in_use_is_never_evicted_newcomers_wait(tmp_path: Path) -> None:
    f = Fixture(tmp_path, capacity=1)
    a, b = await f.adapter("a"), await f.adapter("b")
    async with f.cache.use(a, "o"):
        waiting = asyncio.create_task(f.use_once(b))
        await asyncio.sleep(0.05)
        assert not waiting.done() and f.engine.loaded == {eid(a)}
    await waiting
    assert f.engine.events == [("add", eid(a)), ("remove", eid(a)), ("add", eid(b))]


async def test_unloading_a_busy_adapter_frees_it_when_its_last_request_ends(tmp_path: Path) -> None:
    f = Fixture(tmp_path)
    a = await f.adapter("a")
    async with f.cache.use(a, "o"):
        assert await f.cache.unload(a.name, "o")
        assert f.cache.list("o") == [] and f.engine.loaded == {eid(a)}
        comeback = asyncio.create_task(f.use_once(a))
        await asyncio.sleep(0.02)
        assert not comeback.done(), "a new request waits for the unload to finish"
    await comeback
    assert f.engine.events == [("add", eid(a)), ("remove", eid(a)), ("add", eid(a))]
    await f.cache.close()


async def test_unloading_an_idle_adapter_removes_it_from_engine_and_disk(tmp_path: Path) -> None:
    f = Fixture(tmp_path)
    a = await f.adapter("a")
    await f.use_once(a)
    assert await f.cache.unload(a.name, "o")
    assert f.engine.loaded == set() and f.cache.list("o") == []
    assert list((tmp_path / "cache").iterdir()) == []


async def test_a_failed_load_leaves_nothing_and_the_next_request_retries(tmp_path: Path) -> None:
    f = Fixture(tmp_path)
    a = await f.adapter("a")
    f.engine.refuse.add(eid(a))
    with pytest.raises(FailedPrecondition):
        await f.use_once(a)
    assert f.cache.list("o") == [] and list((tmp_path / "cache").iterdir()) == []
    f.engine.refuse.clear()
    await f.use_once(a)
    assert f.engine.loaded == {eid(a)} and sum(f.downloads.values()) == 4


async def test_missing_and_incomplete_adapters(tmp_path: Path) -> None:
    f = Fixture(tmp_path)
    ghost = AdapterRef("ft:tailor-tiny:o::ghost", "orgs/o/adapters/ghost", "tailor-tiny")
    with pytest.raises(NotFound, match="does not exist"):
        await f.use_once(ghost)
    a = await f.adapter("a")
    await f.store.delete(f"{a.uri}adapter_model.safetensors")
    with pytest.raises(FailedPrecondition, match="incomplete"):
        await f.use_once(a)
    bad = await f.adapter("bad", weights={"base_model.model.nowhere.lora_A.weight": torch.zeros(4, 16)})
    with pytest.raises(FailedPrecondition, match="no such layer"):
        await f.use_once(bad)
    assert f.engine.events == [] and f.cache.list("o") == []


async def test_references_this_replica_cannot_serve_are_refused_before_any_download(tmp_path: Path) -> None:
    f = Fixture(tmp_path)
    a = await f.adapter("a")
    with pytest.raises(InvalidArgument, match="is for base model `qwen`"):
        await f.use_once(AdapterRef(a.name, a.uri, "qwen"))
    with pytest.raises(InvalidArgument, match="invalid location"):
        await f.use_once(AdapterRef(a.name, "../../etc", "tailor-tiny"))
    with pytest.raises(FailedPrecondition, match="LoRA rank 64"):
        await f.use_once(AdapterRef(a.name, a.uri, "tailor-tiny", lora_rank=64))
    assert not f.downloads


async def test_the_disk_keeps_at_most_its_limit_of_idle_downloads(tmp_path: Path) -> None:
    f = Fixture(tmp_path, capacity=1, max_disk_entries=2)
    refs = [await f.adapter(n) for n in "abc"]
    for ref in refs:
        await f.use_once(ref)
    assert f.states() == {"c": AdapterState.LOADED, "b": AdapterState.CACHED}
    assert len(list((tmp_path / "cache").iterdir())) == 2


def test_leftovers_of_an_earlier_run_are_removed_and_other_files_kept(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    (cache_dir / ("0" * 32)).mkdir(parents=True)
    (cache_dir / ".staging-1234").mkdir()
    (cache_dir / "notes.txt").write_text("mine")
    Fixture(tmp_path)
    assert [p.name for p in cache_dir.iterdir()] == ["notes.txt"]
