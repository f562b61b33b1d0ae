"""Which requests are waiting and which are running, per adapter, as the service sees them.

A request waits from its arrival until its first token (its adapter loading, a free
batch slot, its prefill) and runs from then until it ends. ListAdapters reports these
counts per adapter, and the vLLM-style gauges (:mod:`services.inference.metrics`) list
the adapters with running or waiting requests, which is what LoRA-aware routers score.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator

from services.inference.metrics import LoadSnapshot


class TrackedRequest:
    """One request's place in the tracker; call :meth:`started` at its first token."""

    def __init__(self, tracker: RequestTracker, adapter: str | None) -> None:
        self._tracker = tracker
        self._adapter = adapter
        self.running = False

    def started(self) -> None:
        if not self.running:
            self.running = True
            self._tracker._moved_to_running(self._adapter)


class RequestTracker:
    """Counts of waiting and running requests by adapter name (None: the bare base model)."""

    def __init__(self) -> None:
        self._waiting: Counter[str | None] = Counter()
        self._running: Counter[str | None] = Counter()

    @contextlib.contextmanager
    def track(self, adapter: str | None) -> Iterator[TrackedRequest]:
        """Count a request as waiting for the block's duration, or running once it has :meth:`~TrackedRequest.started`."""
        request = TrackedRequest(self, adapter)
        self._waiting[adapter] += 1
        try:
            yield request
        finally:
            counts = self._running if request.running else self._waiting
            counts[adapter] -= 1
            if counts[adapter] == 0:
                del counts[adapter]

    def _moved_to_running(self, adapter: str | None) -> None:
        self._waiting[adapter] -= 1
        self._running[adapter] += 1

    def counts(self, adapter: str) -> tuple[int, int]:
        """(running, waiting) requests of one adapter."""
        return self._running[adapter], self._waiting[adapter]

    def snapshot(self) -> LoadSnapshot:
        return LoadSnapshot(
            running=sum(self._running.values()),
            waiting=sum(self._waiting.values()),
            running_adapters=tuple(sorted(name for name, count in self._running.items() if name and count)),
            waiting_adapters=tuple(sorted(name for name, count in self._waiting.items() if name and count)),
        )
