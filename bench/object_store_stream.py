"""Object store streaming: Tailor's async streamed put/get against the direct path, same run.

For each backend (filesystem, and S3 on a loopback moto server) and each size, two child
processes move the same bytes in 1 MiB chunks and hash them on the way:

- tailor: ``ObjectStore.put`` from an async chunk iterator, then ``ObjectStore.get``
  (``tests/integration/object_store_roundtrip.py``, the script the memory test runs);
- direct: the plain path without Tailor's layer: ``open().write`` / ``read`` on the
  filesystem, the minio SDK's own ``put_object`` (known length) / ``get_object`` on S3.

Each child reports its wall times and its own peak RSS (VmHWM), so the figures are not
polluted by this process or the S3 server. Prints a table with the tailor/direct ratios
and writes it to docs/benchmarks.md.

    python bench/object_store_stream.py [--sizes 64,256] [--repeat 3]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.harness import ChunkReader, run_child  # noqa: E402
from bench.report import write_section  # noqa: E402
from tests.support.s3_server import ACCESS_KEY, REGION, SECRET_KEY, moto_s3_server_process  # noqa: E402

CHUNK = 1 << 20
ROUNDTRIP = REPO / "tests" / "integration" / "object_store_roundtrip.py"


def _chunks(size_mib: int, pattern: bytes):  # type: ignore[no-untyped-def]
    for index in range(size_mib):
        yield index.to_bytes(8, "big") + pattern[8:]


def _peak_rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def direct_child(backend: str, size_mib: int, root: str, endpoint: str, bucket: str) -> dict[str, object]:
    """The baseline: the same bytes through the plain file API or the minio SDK, synchronously."""
    pattern = os.urandom(CHUNK)
    sent, received = hashlib.sha256(), hashlib.sha256()
    if backend == "fs":
        path = Path(root) / "direct.bin"
        started = time.perf_counter()
        with open(path, "wb") as f:
            for chunk in _chunks(size_mib, pattern):
                sent.update(chunk)
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        put_s = time.perf_counter() - started
        started = time.perf_counter()
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                received.update(chunk)
        get_s = time.perf_counter() - started
        path.unlink()
    else:
        from minio import Minio

        client = Minio(endpoint, access_key=ACCESS_KEY, secret_key=SECRET_KEY, secure=False, region=REGION)
        if not client.bucket_exists(bucket):
            client.make_bucket(bucket)

        def hashed_chunks():  # type: ignore[no-untyped-def]
            for chunk in _chunks(size_mib, pattern):
                sent.update(chunk)
                yield chunk

        started = time.perf_counter()
        client.put_object(bucket, "direct.bin", ChunkReader(hashed_chunks()), length=size_mib * CHUNK, part_size=16 * CHUNK)
        put_s = time.perf_counter() - started
        started = time.perf_counter()
        response = client.get_object(bucket, "direct.bin")
        try:
            for chunk in response.stream(CHUNK):
                received.update(chunk)
        finally:
            response.close()
            response.release_conn()
        get_s = time.perf_counter() - started
        client.remove_object(bucket, "direct.bin")
    return {
        "put_s": put_s,
        "get_s": get_s,
        "sha256_matches": sent.hexdigest() == received.hexdigest(),
        "peak_rss_kib": _peak_rss_kib(),
    }


def measure(backend: str, size_mib: int, root: str, endpoint: str) -> dict[str, dict[str, object]]:
    bucket = f"bench-{backend}-{size_mib}-{time.monotonic_ns()}"
    tailor_args = [sys.executable, str(ROUNDTRIP), "--backend", backend, "--size-mib", str(size_mib)]
    if backend == "fs":
        tailor_args += ["--root", root]
    else:
        tailor_args += ["--endpoint", endpoint, "--bucket", bucket, "--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY]
    direct_args = [sys.executable, __file__, "--child-direct", backend, "--size-mib", str(size_mib),
                   "--root", root, "--endpoint", endpoint, "--bucket", bucket]  # fmt: skip
    return {"tailor": run_child(tailor_args), "direct": run_child(direct_args)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="64,256", help="object sizes in MiB, comma-separated")
    parser.add_argument("--repeat", type=int, default=3, help="runs per cell; medians are reported")
    parser.add_argument("--child-direct", choices=["fs", "s3"], help=argparse.SUPPRESS)
    parser.add_argument("--size-mib", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--root", default="", help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", default="", help=argparse.SUPPRESS)
    parser.add_argument("--bucket", default="", help=argparse.SUPPRESS)
    parser.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    args = parser.parse_args()

    if args.child_direct:
        print(json.dumps(direct_child(args.child_direct, args.size_mib, args.root, args.endpoint, args.bucket)))
        return 0

    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    with moto_s3_server_process() as s3, tempfile.TemporaryDirectory() as root:
        for backend in ("fs", "s3"):
            for size in sizes:
                runs = [measure(backend, size, root, s3.server.endpoint) for _ in range(args.repeat)]
                assert all(r[p]["sha256_matches"] for r in runs for p in r), "bytes corrupted in transit"

                def med(path: str, key: str) -> float:
                    return statistics.median(float(r[path][key]) for r in runs)  # noqa: B023

                rows.append(
                    {
                        "backend": backend,
                        "size_mib": size,
                        "put_mib_s": (size / med("tailor", "put_s"), size / med("direct", "put_s")),
                        "get_mib_s": (size / med("tailor", "get_s"), size / med("direct", "get_s")),
                        "peak_rss_mib": (med("tailor", "peak_rss_kib") / 1024, med("direct", "peak_rss_kib") / 1024),
                    }
                )

    lines = [
        "| backend | size | put MiB/s tailor / direct (ratio) | get MiB/s tailor / direct (ratio) | peak RSS MiB tailor / direct |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        (tp, dp), (tg, dg), (tr, dr) = row["put_mib_s"], row["get_mib_s"], row["peak_rss_mib"]
        lines.append(
            f"| {row['backend']} | {row['size_mib']} MiB | {tp:.0f} / {dp:.0f} ({tp / dp:.2f}x) "
            f"| {tg:.0f} / {dg:.0f} ({tg / dg:.2f}x) | {tr:.0f} / {dr:.0f} |"
        )
    table = "\n".join(lines)
    print(table)
    if not args.no_write:
        command = f"python bench/object_store_stream.py --sizes {args.sizes} --repeat {args.repeat}"
        write_section(
            "object_store_stream",
            "Object store: streamed round trip vs the direct path",
            f"Median of {args.repeat} runs per row; each side in its own process, peak RSS = its VmHWM. "
            "S3 is moto's server on loopback, so its absolute speed says little about MinIO; the "
            "ratio and the flat memory are the point.",
            table,
            command,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
