"""Removing at start-up what a killed process's uploads left in the object store.

A process killed mid-``put`` leaves a temporary file or an incomplete multipart upload
that nothing else would ever remove (see ``ObjectStore.remove_abandoned_uploads``). Each
service that writes sweeps its own keys as it starts: the dataset service its files, the
trainer its jobs' outputs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from services.common.object_store.base import ObjectStore

log = structlog.get_logger(__name__)


@dataclass
class AbandonedUploadSweep:
    """Removes, once per process, the abandoned uploads under ``prefix`` whose key is ``matching``.

    Meant as a readiness check: it then runs at start-up, before the service first reports
    ready, and, if the store is down then, again at every check until it succeeds. It never
    fails the check: a store that cannot list incomplete uploads must not keep the service
    from serving.
    """

    store: ObjectStore
    prefix: str
    older_than_s: float
    matching: Callable[[str], bool]
    done: bool = field(default=False, init=False)

    async def __call__(self) -> None:
        if self.done:
            return
        try:
            removed = await self.store.remove_abandoned_uploads(
                self.prefix, older_than_s=self.older_than_s, matching=self.matching
            )
        except Exception as exc:
            log.warning(
                "object_store.sweep_failed", prefix=self.prefix, error=str(exc), note="retried at the next check"
            )
            return
        self.done = True
        if removed:
            log.info("object_store.abandoned_uploads_removed", prefix=self.prefix, count=removed)
