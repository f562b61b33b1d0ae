"""Stream an object of --size-mib MiB through the object store and back, then report peak memory.

Run as a subprocess by the memory test in test_object_store.py, so that the peak resident
set size it reports belongs to the object store alone, not to pytest or the S3 server:

    python tests/integration/object_store_roundtrip.py --backend fs --root DIR --size-mib 200
    python tests/integration/object_store_roundtrip.py --backend s3 --endpoint HOST:PORT \\
        --bucket B --access-key K --secret-key S --size-mib 200

The object is put from a generator of 1 MiB chunks and read back with ``get``, hashing
both sides as the bytes pass; neither side ever holds the whole object. Prints one JSON
line: sizes, timings, whether the sha256 matched, and ``peak_rss_kib`` (see _peak_rss_kib).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import resource
import time
from collections.abc import AsyncIterator

from services.common.object_store import open_object_store
from services.common.settings import CommonSettings

CHUNK = 1 << 20


def _peak_rss_kib() -> int:
    """Peak resident set size of this process image, in KiB.

    ru_maxrss alone would mislead: Linux carries the parent's resident size at fork over
    into the child's ru_maxrss (measured: a child of a 500 MiB parent reports 500 MiB
    from its first instruction), so a large pytest process would mask everything measured
    here. VmHWM belongs to the address space the exec created, so it is this script's own.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux; an upper bound


async def _round_trip(settings: CommonSettings, size_mib: int) -> dict[str, object]:
    store = open_object_store(settings)
    key = f"roundtrip/object-{size_mib}mib"
    sent = hashlib.sha256()
    # Each chunk is a fresh allocation, as chunks arriving from a client would be.
    pattern = os.urandom(CHUNK)

    async def chunks() -> AsyncIterator[bytes]:
        for index in range(size_mib):
            chunk = index.to_bytes(8, "big") + pattern[8:]
            sent.update(chunk)
            yield chunk

    try:
        started = time.perf_counter()
        stored = await store.put(key, chunks())
        put_s = time.perf_counter() - started

        received = hashlib.sha256()
        received_bytes = 0
        started = time.perf_counter()
        async for chunk in store.get(key):
            received.update(chunk)
            received_bytes += len(chunk)
        get_s = time.perf_counter() - started
        await store.delete(key)
    finally:
        await store.close()

    return {
        "size_bytes": stored.size,
        "received_bytes": received_bytes,
        "sha256_matches": stored.sha256 == sent.hexdigest() == received.hexdigest(),
        "put_s": round(put_s, 3),
        "get_s": round(get_s, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["fs", "s3"], required=True)
    parser.add_argument("--size-mib", type=int, required=True)
    parser.add_argument("--root", help="data directory of the fs backend")
    parser.add_argument("--endpoint", help="host:port of the S3 server")
    parser.add_argument("--bucket", default="roundtrip")
    parser.add_argument("--access-key", default="")
    parser.add_argument("--secret-key", default="")
    args = parser.parse_args()

    if args.backend == "fs":
        if not args.root:
            parser.error("--backend fs needs --root")
        settings = CommonSettings(data_dir=args.root)
    else:
        if not args.endpoint:
            parser.error("--backend s3 needs --endpoint")
        settings = CommonSettings(
            object_store_endpoint=args.endpoint,
            object_store_bucket=args.bucket,
            object_store_access_key=args.access_key,
            object_store_secret_key=args.secret_key,
            object_store_region="us-east-1",
        )

    peak_before_kib = _peak_rss_kib()
    report = asyncio.run(_round_trip(settings, args.size_mib))
    report.update(
        backend=args.backend,
        size_mib=args.size_mib,
        part_size_mib=settings.object_store_part_size_mib,
        peak_rss_before_kib=peak_before_kib,
        peak_rss_kib=_peak_rss_kib(),
        ru_maxrss_kib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    )
    print(json.dumps(report))


if __name__ == "__main__":
    main()
