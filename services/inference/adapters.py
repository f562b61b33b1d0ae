"""The adapter cache: object store -> local directory -> engine, each tier an LRU with limits.

An adapter is named by the model registry (its ``ft:`` model name) and lives under a
prefix of the object store. The first request that names it:

1. downloads ``adapter_config.json`` and ``adapter_model.safetensors`` into a staging
   directory, checks them (:mod:`services.inference.adapter_validation`) and renames the
   directory into place, so the cache never holds a partial adapter;
2. makes room in the engine, evicting the least recently used adapter that no request
   is using, or waiting until one is free;
3. adds the adapter to the engine.

Concurrent requests for the same cold adapter share that one load (single flight): it
runs as its own task, so it finishes for the others even when the request that started
it goes away. A missing adapter is NOT_FOUND, an unusable one FAILED_PRECONDITION; either
fails only the requests that named it, and leaves nothing behind in cache or engine.

Adapters belong to organizations: the cache is keyed by (organization, model name), and
the references it loads come from the model registry, resolved for the organization of the
call (:mod:`services.inference.registry`), never from the caller. Each entry enters the
engine, its LRU and the local directory under an id of its own, ``{organization}/{name}``
(organization ids never hold a ``/``), so two organizations' models of the same name are
two adapters, and no organization can see, evict, unload or shadow another's. An adapter in
use is never evicted; unloading one (its model was deleted) takes it out of service at once
and frees it when its last request ends. The local directory belongs to this replica: leftovers from an earlier run
are removed at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
import os
import re
import secrets
import shutil
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from services.common.errors import FailedPrecondition, InvalidArgument, NotFound
from services.common.not_found import model_not_found
from services.common.object_store import ObjectNotFound, ObjectStore
from services.common.object_store.base import is_valid_key
from services.inference import metrics
from services.inference.adapter_validation import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    BaseModelLayout,
    check_target_modules,
    validate_adapter_dir,
)
from services.inference.engine import Engine

log = structlog.get_logger("tailor.inference.adapters")

_ENTRY_DIRECTORY = re.compile(r"^[0-9a-f]{32}$")
_STAGING_PREFIX = ".staging-"


@dataclass(frozen=True)
class AdapterRef:
    """An adapter as the model registry describes it."""

    name: str
    uri: str
    base_model: str
    lora_rank: int = 0
    # Leaf names of the modules it adapts, as recorded; empty when unknown.
    target_modules: tuple[str, ...] = ()


class AdapterState(enum.Enum):
    LOADING = "loading"
    LOADED = "loaded"
    CACHED = "cached"


def engine_adapter_id(organization: str, name: str) -> str:
    """The id an organization's adapter has in the engine, its LRU and the local directory."""
    return f"{organization}/{name}"


@dataclass(frozen=True)
class AdapterStatus:
    """Where an adapter is in this replica."""

    ref: AdapterRef
    state: AdapterState
    last_used_at: float
    # Its id in the engine (``{organization}/{name}``): request counts are kept under it.
    engine_id: str = ""


@dataclass(eq=False)
class _Entry:
    ref: AdapterRef
    owner: str
    # engine_adapter_id(owner, ref.name): the key of the cache and the name in the engine.
    engine_id: str
    directory: Path | None = None
    size_bytes: int = 0
    in_engine: bool = False
    # Requests holding the adapter: it is not evicted while any do.
    users: int = 0
    last_used_at: float = field(default_factory=time.time)
    # The single in-flight load into the engine, shared by every request waiting for it.
    loading: asyncio.Task[None] | None = None
    # Unloaded: no new users; removed when the last one leaves (then `gone` is set).
    retired: bool = False
    gone: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def state(self) -> AdapterState:
        if self.in_engine:
            return AdapterState.LOADED
        return AdapterState.LOADING if self.loading is not None else AdapterState.CACHED


class AdapterCache:
    """Adapters from the object store, cached on local disk and in the engine; see the module docstring."""

    def __init__(
        self,
        store: ObjectStore,
        engine: Engine,
        layout: BaseModelLayout,
        *,
        served_base_model: str,
        cache_dir: Path,
        max_lora_rank: int,
        max_disk_entries: int,
        max_disk_bytes: int,
    ) -> None:
        self._store = store
        self._engine = engine
        self._layout = layout
        self._served_base_model = served_base_model
        self._cache_dir = cache_dir
        self._max_lora_rank = max_lora_rank
        self._max_disk_entries = max_disk_entries
        self._max_disk_bytes = max_disk_bytes
        # By engine_adapter_id (organization and name); least recently used first.
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        # Engine slots taken by loaded adapters and by loads under way.
        self._engine_slots_used = 0
        self._slot_freed = asyncio.Event()
        self._background: set[asyncio.Task[None]] = set()
        _remove_leftovers(cache_dir)

    @contextlib.asynccontextmanager
    async def use(self, ref: AdapterRef, organization: str) -> AsyncIterator[str]:
        """Hold the organization's adapter in the engine for the block; yields its id in the engine.

        ``ref`` is what the model registry resolved for ``organization``: never a caller's.
        """
        entry = await self._acquire(ref, organization)
        try:
            yield entry.engine_id
        finally:
            self._release(entry)

    async def load(self, ref: AdapterRef, organization: str) -> AdapterStatus:
        """Bring the adapter into the engine ahead of use (LoadAdapter); a loaded one is only touched."""
        entry = await self._acquire(ref, organization)
        try:
            return AdapterStatus(entry.ref, entry.state, entry.last_used_at, entry.engine_id)
        finally:
            self._release(entry)

    async def unload(self, name: str, organization: str) -> bool:
        """Take the adapter out of service; False if this replica does not hold it for ``organization``."""
        entry = self._entries.get(engine_adapter_id(organization, name))
        if entry is None or entry.retired:
            return False
        entry.retired = True
        if entry.users == 0:
            await self._remove(entry)
        return True

    def list(self, organization: str) -> list[AdapterStatus]:
        """The organization's adapters in this replica, most recently used first."""
        return [
            AdapterStatus(entry.ref, entry.state, entry.last_used_at, entry.engine_id)
            for entry in reversed(self._entries.values())
            if entry.owner == organization and not entry.retired
        ]

    async def close(self) -> None:
        """Wait for background removals; the engine is closed by its owner."""
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    # Acquiring and releasing.

    async def _acquire(self, ref: AdapterRef, organization: str) -> _Entry:
        self._check_ref(ref)
        key = engine_adapter_id(organization, ref.name)
        while True:
            entry = self._entries.get(key)
            if entry is None or not entry.retired:
                break
            await entry.gone.wait()  # an unload is finishing: start afresh after it
        if entry is None:
            entry = _Entry(ref, organization, key)
            self._entries[key] = entry
        # Counted before any await, so the adapter cannot be evicted from under this request.
        entry.users += 1
        try:
            if entry.in_engine:
                metrics.ADAPTER_REQUESTS.labels("hit").inc()
            else:
                metrics.ADAPTER_REQUESTS.labels("miss").inc()
                if entry.loading is None:
                    entry.loading = asyncio.create_task(self._bring_into_engine(entry))
                # shield: a cancelled request stops waiting, the load goes on for the others.
                await asyncio.shield(entry.loading)
        except BaseException:
            self._release(entry)
            raise
        entry.last_used_at = time.time()
        if self._entries.get(key) is entry:
            self._entries.move_to_end(key)
        return entry

    def _release(self, entry: _Entry) -> None:
        entry.users -= 1
        if entry.users == 0:
            self._slot_freed.set()
            if entry.retired:
                self._in_background(self._remove(entry))

    def _check_ref(self, ref: AdapterRef) -> None:
        if not ref.name:
            raise InvalidArgument("adapter.name must not be empty", param="model")
        # The registry's word on the model's base: an adapter runs only on the base it was trained on.
        if ref.base_model != self._served_base_model:
            raise InvalidArgument(
                f"adapter `{ref.name}` is for base model `{ref.base_model}`; this replica serves "
                f"`{self._served_base_model}`",
                param="model",
            )
        if not is_valid_key(f"{_prefix(ref.uri)}/{CONFIG_FILE}"):
            raise InvalidArgument(f"adapter `{ref.name}` has an invalid location {ref.uri!r}", param="model")
        if ref.lora_rank > self._max_lora_rank:
            raise FailedPrecondition(
                f"adapter `{ref.name}` has LoRA rank {ref.lora_rank}, more than this replica's "
                f"max_lora_rank {self._max_lora_rank}",
                param="model",
                code="invalid_adapter",
            )
        check_target_modules(ref.target_modules, self._layout, name=ref.name)

    # Loading.

    async def _bring_into_engine(self, entry: _Entry) -> None:
        started = time.perf_counter()
        result = "error"
        try:
            if entry.directory is None:
                await self._download(entry)
            await self._reserve_engine_slot()
            try:
                await self._engine.add_adapter(entry.engine_id, entry.directory)  # type: ignore[arg-type]
            except BaseException:
                self._free_engine_slot()
                raise
            entry.in_engine = True
            result = "loaded"
            log.info(
                "adapter loaded",
                adapter=entry.ref.name,
                organization=entry.owner,
                seconds=round(time.perf_counter() - started, 3),
            )
        except NotFound:
            result = "not_found"
            raise
        except FailedPrecondition as error:
            result = "invalid"
            log.warning(
                "adapter refused", adapter=entry.ref.name, organization=entry.owner, reason=error.message
            )
            raise
        finally:
            entry.loading = None
            metrics.ADAPTER_LOADS.labels(result).inc()
            metrics.ADAPTER_LOAD_SECONDS.observe(time.perf_counter() - started)
            if not entry.in_engine:
                # Nothing half-done stays: the next request starts from the object store.
                self._forget(entry)
        self._trim_disk()

    async def _download(self, entry: _Entry) -> None:
        ref = entry.ref
        staging = self._cache_dir / f"{_STAGING_PREFIX}{secrets.token_hex(8)}"
        try:
            try:
                await self._store.get_file(f"{_prefix(ref.uri)}/{CONFIG_FILE}", staging / CONFIG_FILE)
            except ObjectNotFound:
                raise model_not_found(ref.name) from None
            try:
                await self._store.get_file(f"{_prefix(ref.uri)}/{WEIGHTS_FILE}", staging / WEIGHTS_FILE)
            except ObjectNotFound:
                raise FailedPrecondition(
                    f"adapter `{ref.name}` is incomplete: {WEIGHTS_FILE} is missing at its location",
                    param="model",
                    code="invalid_adapter",
                ) from None
            metrics.ADAPTER_DOWNLOADS.inc()
            checked = await asyncio.to_thread(
                validate_adapter_dir,
                staging,
                self._layout,
                max_lora_rank=self._max_lora_rank,
                name=ref.name,
                expected_modules=list(ref.target_modules),
            )
            directory = self._cache_dir / hashlib.sha256(entry.engine_id.encode()).hexdigest()[:32]
            await asyncio.to_thread(_replace_directory, staging, directory)
        finally:
            await asyncio.to_thread(shutil.rmtree, staging, True)
        entry.directory, entry.size_bytes = directory, checked.size_bytes

    async def _reserve_engine_slot(self) -> None:
        while self._engine_slots_used >= self._engine.adapter_capacity:
            victim = next(
                (e for e in self._entries.values() if e.in_engine and e.users == 0 and e.loading is None),
                None,
            )
            if victim is None:
                # Every loaded adapter is serving requests: wait for one to finish.
                self._slot_freed.clear()
                await self._slot_freed.wait()
                continue
            await self._evict_from_engine(victim)
            metrics.ADAPTER_EVICTIONS.labels("engine").inc()
        self._engine_slots_used += 1

    def _free_engine_slot(self) -> None:
        self._engine_slots_used -= 1
        self._slot_freed.set()

    async def _evict_from_engine(self, entry: _Entry) -> None:
        # Marked first, so no request takes it as loaded while the engine drops it; a request
        # that wants it back starts a new load, which the engine runs after this removal.
        entry.in_engine = False
        try:
            await self._engine.remove_adapter(entry.engine_id)
        finally:
            self._free_engine_slot()

    # Removing.

    async def _remove(self, entry: _Entry) -> None:
        """Drop a retired adapter from engine, disk and cache (its last request has ended)."""
        if entry.loading is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(entry.loading)
        if entry.in_engine:
            await self._evict_from_engine(entry)
        self._forget(entry)

    def _forget(self, entry: _Entry) -> None:
        if self._entries.get(entry.engine_id) is entry:
            del self._entries[entry.engine_id]
        if entry.directory is not None:
            shutil.rmtree(entry.directory, ignore_errors=True)
            entry.directory = None
        entry.gone.set()

    def _trim_disk(self) -> None:
        """Delete the least recently used downloads beyond the disk limits (never one in the engine or loading)."""
        on_disk = [e for e in self._entries.values() if e.directory is not None]
        count, size = len(on_disk), sum(e.size_bytes for e in on_disk)
        for entry in on_disk:  # least recently used first
            if count <= self._max_disk_entries and size <= self._max_disk_bytes:
                break
            if entry.in_engine or entry.loading is not None or entry.users:
                continue
            count, size = count - 1, size - entry.size_bytes
            self._forget(entry)
            metrics.ADAPTER_EVICTIONS.labels("disk").inc()

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def _prefix(uri: str) -> str:
    return uri.strip().rstrip("/")


def _replace_directory(source: Path, target: Path) -> None:
    # A directory left by an entry that was forgotten mid-removal is replaced, never merged.
    if target.exists():
        shutil.rmtree(target)
    os.replace(source, target)


def _remove_leftovers(cache_dir: Path) -> None:
    """Create the cache directory; delete what an earlier run of this replica left in it."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    for child in cache_dir.iterdir():
        if child.is_dir() and (_ENTRY_DIRECTORY.match(child.name) or child.name.startswith(_STAGING_PREFIX)):
            shutil.rmtree(child, ignore_errors=True)
