"""Dataset uploads: a JSONL file through the dataset service vs a direct put to the same object store.

For each backend (filesystem, and S3 on a loopback moto server) and each size, in one run:

- service: ``tests/integration/dataset/large_upload.py`` starts ``python -m services.dataset``
  in its own process and streams a generated chat fine-tuning file to it over gRPC in 1 MiB
  chunks; the service validates every line, hashes, stores and records it;
- direct: a child process writes the same bytes, generated the same way, straight into the
  store with no service in between: ``open().write`` + fsync on the filesystem (as the
  filesystem backend does), the minio SDK's ``put_object`` of unknown length in 16 MiB parts
  on S3 (as the S3 backend does).

Reported: throughput of each and their ratio (the target is >= 0.7), and the service's peak
resident set size (VmHWM of its own process, and of each validation worker process) for
each size: memory must not grow with the file. Writes the table to docs/benchmarks.md.

    python bench/dataset_upload.py [--sizes 64,256] [--backends fs,s3] [--repeat 3]
"""

from __future__ import annotations

import argparse
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
from tests.integration.dataset.large_upload import (  # noqa: E402
    MiB,
    chat_examples_block,
    jsonl_chunks,
    peak_rss_kib,
)
from tests.support.s3_server import ACCESS_KEY, REGION, SECRET_KEY, moto_s3_server_process  # noqa: E402

LARGE_UPLOAD = REPO / "tests" / "integration" / "dataset" / "large_upload.py"
# The same block large_upload.py repeats, so both sides move the same bytes.
BLOCK_BYTES = 4 * MiB + 12_345
S3_PART_BYTES = 16 * MiB


def direct_child(backend: str, size_mib: int, root: str, endpoint: str, bucket: str) -> dict[str, object]:
    """The baseline: the same bytes into the same store, without the service."""
    block, _ = chat_examples_block(BLOCK_BYTES)
    repeats = max(1, round(size_mib * MiB / len(block)))
    started = time.perf_counter()
    if backend == "fs":
        path = Path(root) / "direct.jsonl"
        with open(path, "wb") as f:
            for chunk in jsonl_chunks(block, repeats):
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        seconds = time.perf_counter() - started
        path.unlink()
    else:
        from minio import Minio

        client = Minio(endpoint, access_key=ACCESS_KEY, secret_key=SECRET_KEY, secure=False, region=REGION)
        if not client.bucket_exists(bucket):
            client.make_bucket(bucket)

        started = time.perf_counter()
        client.put_object(bucket, "direct.jsonl", ChunkReader(jsonl_chunks(block, repeats)), length=-1, part_size=S3_PART_BYTES)
        seconds = time.perf_counter() - started
        client.remove_object(bucket, "direct.jsonl")
    return {"bytes": len(block) * repeats, "seconds": seconds, "peak_rss_kib": peak_rss_kib(os.getpid())}


def measure(backend: str, size_mib: int, root: str, endpoint: str) -> dict[str, dict[str, object]]:
    bucket = f"bench-{backend}-{size_mib}-{time.monotonic_ns()}"
    with tempfile.TemporaryDirectory(dir=root) as data_dir:
        service_args = [
            sys.executable,
            str(LARGE_UPLOAD),
            "--size-mib",
            str(size_mib),
            "--data-dir",
            data_dir,
        ]
        if backend == "s3":
            service_args += ["--endpoint", endpoint, "--bucket", bucket]
        service = run_child(service_args)
    assert service["status"] == "FILE_STATUS_PROCESSED", service
    assert service["size_bytes"] == service["expected_bytes"], service
    direct_args = [sys.executable, __file__, "--child-direct", backend, "--size-mib", str(size_mib),
                   "--root", root, "--endpoint", endpoint, "--bucket", bucket + "-direct"]  # fmt: skip
    return {"service": service, "direct": run_child(direct_args)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="64,256", help="file sizes in MiB, comma-separated")
    parser.add_argument("--backends", default="fs,s3", help="object store backends: fs, s3 or both")
    parser.add_argument("--repeat", type=int, default=3, help="runs per cell; medians are reported")
    parser.add_argument("--child-direct", choices=["fs", "s3"], help=argparse.SUPPRESS)
    parser.add_argument("--size-mib", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--root", default="", help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", default="", help=argparse.SUPPRESS)
    parser.add_argument("--bucket", default="", help=argparse.SUPPRESS)
    parser.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    args = parser.parse_args()

    if args.child_direct:
        print(
            json.dumps(direct_child(args.child_direct, args.size_mib, args.root, args.endpoint, args.bucket))
        )
        return 0

    sizes = [int(size) for size in args.sizes.split(",")]
    backends = args.backends.split(",")
    load_before = os.getloadavg()[0]
    rows = []
    with moto_s3_server_process() as s3, tempfile.TemporaryDirectory() as root:
        for backend in backends:
            for size in sizes:
                runs = [measure(backend, size, root, s3.server.endpoint) for _ in range(args.repeat)]

                def median(side: str, key: str) -> float:
                    return statistics.median(float(run[side][key]) for run in runs)  # noqa: B023

                service_mib_s = median("service", "mib_per_s")
                direct_mib_s = statistics.median(
                    float(run["direct"]["bytes"]) / MiB / float(run["direct"]["seconds"]) for run in runs
                )
                workers = [max(run["service"]["worker_peak_rss_kib"] or [0]) for run in runs]
                rows.append(
                    f"| {backend} | {size} MiB | {service_mib_s:.0f} | {direct_mib_s:.0f} "
                    f"| {service_mib_s / direct_mib_s:.2f}x | {median('service', 'service_peak_rss_kib') / 1024:.0f} "
                    f"({median('service', 'service_idle_rss_kib') / 1024:.0f} idle) "
                    f"| {statistics.median(workers) / 1024:.0f} |"
                )
    load_after = os.getloadavg()[0]

    table = "\n".join(
        [
            "| backend | file | service MiB/s | direct MiB/s | ratio | service peak RSS MiB | worker peak RSS MiB |",
            "|---|---|---|---|---|---|---|",
            *rows,
        ]
    )
    print(table)
    print(f"load average (1 min) before / after: {load_before:.2f} / {load_after:.2f}")
    if not args.no_write:
        command = f"python bench/dataset_upload.py --sizes {args.sizes} --backends {args.backends} --repeat {args.repeat}"
        write_section(
            "dataset_upload",
            "Dataset service: streamed, validated uploads vs a direct put",
            f"Median of {args.repeat} runs per row. A generated chat fine-tuning file (about 500 bytes a "
            "line) goes through `python -m services.dataset` over gRPC in 1 MiB chunks, validated line "
            "by line in its worker processes (`TAILOR_DATASET_VALIDATION_PROCESSES`, default 2), hashed, "
            "stored and recorded; the direct side writes the same bytes into the same store with no "
            "service. Each side runs in its own process; peak RSS is VmHWM (the service process, and the "
            "largest of its validation workers). S3 is moto's server on loopback, itself Python and "
            f"sharing the CPU. 1-minute load average before / after: {load_before:.2f} / {load_after:.2f}.",
            table,
            command,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
