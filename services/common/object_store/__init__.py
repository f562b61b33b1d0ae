"""Where Tailor keeps its blobs: uploaded files, checkpoints, adapters, result files.

Services call :func:`open_object_store` once at startup and use the returned
:class:`ObjectStore`; which backend sits behind it is a matter of settings:

* ``TAILOR_OBJECT_STORE_ENDPOINT`` empty (the default): files under ``data_dir/objects``;
* ``host:port`` of MinIO or any S3: objects in ``TAILOR_OBJECT_STORE_BUCKET`` there.
"""

from __future__ import annotations

from services.common.object_store.base import (
    ObjectNotFound,
    ObjectStore,
    ObjectStoreUnavailable,
    StoredObject,
    validate_key,
)
from services.common.object_store.filesystem import FilesystemObjectStore
from services.common.object_store.s3 import S3ObjectStore
from services.common.settings import CommonSettings, MiB

__all__ = [
    "FilesystemObjectStore",
    "ObjectNotFound",
    "ObjectStore",
    "ObjectStoreUnavailable",
    "S3ObjectStore",
    "StoredObject",
    "open_object_store",
    "validate_key",
]


def open_object_store(settings: CommonSettings) -> ObjectStore:
    """The object store the settings describe; no connection is made until first use."""
    if not settings.object_store_endpoint:
        return FilesystemObjectStore(settings.objects_dir)
    return S3ObjectStore(
        settings.object_store_endpoint,
        settings.object_store_bucket,
        access_key=settings.object_store_access_key.get_secret_value(),
        secret_key=settings.object_store_secret_key.get_secret_value(),
        secure=settings.object_store_secure,
        region=settings.object_store_region,
        part_size=settings.object_store_part_size_mib * MiB,
    )
