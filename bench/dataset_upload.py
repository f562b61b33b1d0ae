"""Dataset uploads: a JSONL file through the dataset service vs a direct put to the same object store.

First, validation alone, in this process, on the same generated chat file held in memory:
the line-by-line reader (the validator before the batch reader, still the path of every line
that is not a plain example), ``JsonlValidator`` (batch reader, one thread), and the
service's ``StreamValidation`` over its pool of worker processes; with a profile of the first
two. Then for each backend (filesystem, and S3 on a loopback SeaweedFS server, or moto's with
``--s3 moto``) and each size, in one run:

- service: ``tests/integration/dataset/large_upload.py`` starts ``python -m services.dataset``
  in its own process and streams a generated chat fine-tuning file to it over gRPC in 1 MiB
  chunks; the service validates every line, hashes, stores and records it;
- direct: a child process writes the same bytes, generated the same way, straight into the
  store with no service in between: ``open().write`` + fsync on the filesystem (as the
  filesystem backend does), the minio SDK's ``put_object`` of unknown length in 16 MiB parts
  on S3 (as the S3 backend does).

Reported: throughput of each and their ratio (targets: >= 0.9 on S3, >= 0.3 on the filesystem),
and the service's peak
resident set size (VmHWM of its own process, and of each validation worker process) for
each size: memory must not grow with the file. Writes the table to docs/benchmarks.md.

    python bench/dataset_upload.py [--sizes 64,256] [--backends fs,s3] [--repeat 3] [--validation-mib 64]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import contextlib
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import psutil  # noqa: E402

from bench.harness import ChunkReader, run_child  # noqa: E402
from bench.report import write_section  # noqa: E402
from tests.integration.dataset.large_upload import (  # noqa: E402
    MiB,
    chat_examples_block,
    jsonl_chunks,
    peak_rss_kib,
)
from services.common.training_format import ExampleFormat, ExampleReader, may_escape_surrogates  # noqa: E402
from services.common.training_format.batches import _DECODERS  # noqa: E402
from services.dataset.parallel_validation import StreamValidation, ValidationPool  # noqa: E402
from services.dataset.validation import JsonlValidator, LineBlock, LineSplitter  # noqa: E402
from tests.support.s3_server import (  # noqa: E402
    ACCESS_KEY,
    REGION,
    SECRET_KEY,
    S3Server,
    moto_s3_server_process,
)
from tests.support.seaweedfs_server import seaweedfs_s3_server, weed_version  # noqa: E402

LARGE_UPLOAD = REPO / "tests" / "integration" / "dataset" / "large_upload.py"
# The same block large_upload.py repeats, so both sides move the same bytes.
BLOCK_BYTES = 4 * MiB + 12_345
S3_PART_BYTES = 16 * MiB


VALIDATION_PROCESSES = 2  # the service's default (TAILOR_DATASET_VALIDATION_PROCESSES)


def validate_line_by_line(chunks: list[bytes]) -> int:
    """The validator before the batch reader: every line through ExampleReader.read (json, Python checks)."""
    splitter, reader = LineSplitter(16 * MiB), ExampleReader()
    for chunk in [*chunks, None]:
        for piece in splitter.feed(chunk) if chunk is not None else splitter.finish():
            assert isinstance(piece, LineBlock)
            text = piece.data().decode("utf-8")
            reader.may_escape_surrogates = may_escape_surrogates(text)
            for line in text.split("\n"):
                reader.read(line)
    return reader.examples


def parse_only(chunks: list[bytes]) -> int:
    """The floor under the batch reader: each line decoded by its msgspec decoder, nothing else done."""
    decode = _DECODERS[ExampleFormat.CHAT].decode  # the batch reader's own decoder of chat lines
    splitter, decoded = LineSplitter(16 * MiB), 0
    for chunk in [*chunks, None]:
        for piece in splitter.feed(chunk) if chunk is not None else splitter.finish():
            assert isinstance(piece, LineBlock)
            decoded += len(list(map(decode, piece.data().split(b"\n"))))
    return decoded


def validate_in_thread(chunks: list[bytes]) -> int:
    validator = JsonlValidator()
    for chunk in chunks:
        validator.feed(chunk)
    result = validator.finish()
    assert result.valid and result.statistics is not None, result.summary()
    return result.statistics.examples


def validate_in_pool(pool: ValidationPool) -> Callable[[list[bytes]], int]:
    def run(chunks: list[bytes]) -> int:
        async def stream() -> int:
            validation = StreamValidation(pool, max_problems=20, max_line_bytes=16 * MiB)
            for chunk in chunks:
                await validation.feed(chunk)
            result = await validation.finish()
            assert result.valid and result.statistics is not None, result.summary()
            return result.statistics.examples

        return asyncio.run(stream())

    return run


def profile_top(validate: Callable[[list[bytes]], int], chunks: list[bytes], entries: int = 4) -> str:
    """The functions ``validate`` spends most of its own time in, as ``name 41%, ...``."""
    profiler = cProfile.Profile()
    profiler.runcall(validate, chunks)
    stats = profiler.getstats()
    total = sum(entry.inlinetime for entry in stats)
    top = sorted(stats, key=lambda entry: entry.inlinetime, reverse=True)[:entries]

    def name(code: object) -> str:
        if isinstance(code, str):
            return code.replace("<", "").replace(">", "")
        return f"{Path(code.co_filename).stem}.{code.co_name}"  # type: ignore[attr-defined]

    return ", ".join(f"`{name(entry.code)}` {100 * entry.inlinetime / total:.0f}%" for entry in top)


def measure_validation(size_mib: int, repeat: int) -> tuple[str, str]:
    """Validation alone, MiB/s of each validator on the same bytes, interleaved; a table and a profile."""
    block, _ = chat_examples_block(BLOCK_BYTES)
    chunks = list(jsonl_chunks(block, max(1, round(size_mib * MiB / len(block)))))
    total_mib = sum(map(len, chunks)) / MiB
    pool = ValidationPool(VALIDATION_PROCESSES)
    arms = {
        "line by line (json, the validator before), 1 thread": validate_line_by_line,
        "batch reader (msgspec) + line by line, 1 thread": validate_in_thread,
        f"the service's: batch reader in {VALIDATION_PROCESSES} worker processes": validate_in_pool(pool),
        "floor: msgspec decoding alone (no checks, no counts), 1 thread": parse_only,
    }
    try:
        validate_in_pool(pool)([block, block, block])  # start the workers (the first block sets the format)
        speeds: dict[str, list[float]] = {name: [] for name in arms}
        for _ in range(repeat):
            for name, validate in arms.items():
                started = time.perf_counter()
                validate(chunks)
                speeds[name].append(total_mib / (time.perf_counter() - started))
    finally:
        pool.close()
    baseline = statistics.median(speeds[next(iter(arms))])
    rows = [
        f"| {name} | {statistics.median(runs):.0f} | {max(runs):.0f} "
        f"| {statistics.median(runs) / baseline:.1f}x |"
        for name, runs in speeds.items()
    ]
    header = ["| validator | median MiB/s | best MiB/s | vs line by line |", "|---|---|---|---|"]
    table = "\n".join([*header, *rows])
    profile_chunks = [block]  # 4 MiB of whole lines
    profile = (
        f"line by line: {profile_top(validate_line_by_line, profile_chunks)}; "
        f"batch reader: {profile_top(validate_in_thread, profile_chunks)}"
    )
    return table, profile


def direct_child(backend: str, size_mib: int, root: str, endpoint: str, bucket: str) -> dict[str, object]:
    """The baseline: the same bytes into the same store, without the service."""
    block, _ = chat_examples_block(BLOCK_BYTES)
    repeats = max(1, round(size_mib * MiB / len(block)))
    cpu_before = own_cpu_seconds()
    started = time.perf_counter()
    if backend == "fs":
        path = Path(root) / "direct.jsonl"
        with open(path, "wb") as f:
            for chunk in jsonl_chunks(block, repeats):
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        seconds = time.perf_counter() - started
        cpu_s = own_cpu_seconds() - cpu_before
        path.unlink()
    else:
        from minio import Minio

        client = Minio(endpoint, access_key=ACCESS_KEY, secret_key=SECRET_KEY, secure=False, region=REGION)
        if not client.bucket_exists(bucket):
            client.make_bucket(bucket)

        cpu_before = own_cpu_seconds()
        started = time.perf_counter()
        client.put_object(bucket, "direct.jsonl", ChunkReader(jsonl_chunks(block, repeats)), length=-1, part_size=S3_PART_BYTES)
        seconds = time.perf_counter() - started
        cpu_s = own_cpu_seconds() - cpu_before
        client.remove_object(bucket, "direct.jsonl")
    return {
        "bytes": len(block) * repeats,
        "seconds": seconds,
        "peak_rss_kib": peak_rss_kib(os.getpid()),
        "cpu_seconds": {"writer": cpu_s},
    }


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def store_cpu_seconds() -> float:
    """CPU seconds so far of this process's living descendants: between two runs, the S3 server alone."""
    total = 0.0
    for process in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            total += times.user + times.system
    return total


def with_store_cpu(args: list[str]) -> dict[str, object]:
    """:func:`run_child`, its report's ``cpu_seconds`` completed with the store's over the same run."""
    before = store_cpu_seconds()
    report = run_child(args)
    cpu = report["cpu_seconds"]
    assert isinstance(cpu, dict)
    cpu["store"] = store_cpu_seconds() - before
    return report


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
        service = with_store_cpu(service_args)
    assert service["status"] == "FILE_STATUS_PROCESSED", service
    assert service["size_bytes"] == service["expected_bytes"], service
    direct_args = [sys.executable, __file__, "--child-direct", backend, "--size-mib", str(size_mib),
                   "--root", root, "--endpoint", endpoint, "--bucket", bucket + "-direct"]  # fmt: skip
    return {"service": service, "direct": with_store_cpu(direct_args)}


def cpu_ms_per_mib(runs: list[dict[str, dict[str, object]]], side: str) -> dict[str, float]:
    """Median CPU milliseconds per MiB of each process of one side's runs (client, service, ...)."""
    cpu: list[dict[str, float]] = [run[side]["cpu_seconds"] for run in runs]  # type: ignore[misc]
    size_key = "size_bytes" if side == "service" else "bytes"
    mib = [float(run[side][size_key]) / MiB for run in runs]  # type: ignore[arg-type]
    return {
        name: statistics.median(c[name] * 1000 / m for c, m in zip(cpu, mib, strict=True))
        for name in cpu[0]
        if any(c[name] > 0.005 for c in cpu)
    }


def cpu_cell(cpu: dict[str, float]) -> str:
    """``total (process x, ...)`` in ms/MiB."""
    return f"{sum(cpu.values()):.1f} ({', '.join(f'{name} {ms:.1f}' for name, ms in cpu.items())})"


@contextlib.contextmanager
def s3_server(kind: str) -> Iterator[S3Server]:
    if kind == "seaweedfs":
        with seaweedfs_s3_server() as server:
            yield server
    else:
        with moto_s3_server_process() as process:
            yield process.server


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
    parser.add_argument("--validation-mib", type=int, default=64, help="file size for validation alone")
    parser.add_argument("--s3", choices=["seaweedfs", "moto"], default="seaweedfs", help="the S3 server")
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
    validation_table, profile = measure_validation(args.validation_mib, args.repeat)
    print(validation_table)
    print("profile (own time):", profile)
    rows = []
    with s3_server(args.s3) as s3, tempfile.TemporaryDirectory() as root:
        for backend in backends:
            for size in sizes:
                runs = [measure(backend, size, root, s3.endpoint) for _ in range(args.repeat)]

                def median(side: str, key: str) -> float:
                    return statistics.median(float(run[side][key]) for run in runs)  # noqa: B023

                service_mib_s = median("service", "mib_per_s")
                direct_mib_s = statistics.median(
                    float(run["direct"]["bytes"]) / MiB / float(run["direct"]["seconds"]) for run in runs
                )
                workers = [max(run["service"]["worker_peak_rss_kib"] or [0]) for run in runs]
                service_cpu = cpu_ms_per_mib(runs, "service")
                direct_cpu = cpu_ms_per_mib(runs, "direct")
                rows.append(
                    f"| {backend} | {size} MiB | {service_mib_s:.0f} | {direct_mib_s:.0f} "
                    f"| {service_mib_s / direct_mib_s:.2f}x "
                    f"| {cpu_cell(service_cpu)} | {cpu_cell(direct_cpu)} "
                    f"| {median('service', 'service_peak_rss_kib') / 1024:.0f} "
                    f"({median('service', 'service_idle_rss_kib') / 1024:.0f} idle) "
                    f"| {statistics.median(workers) / 1024:.0f} |"
                )
    load_after = os.getloadavg()[0]

    table = "\n".join(
        [
            "| backend | file | service MiB/s | direct MiB/s | ratio | CPU ms/MiB through the service "
            "| CPU ms/MiB direct | service peak RSS MiB | worker peak RSS MiB |",
            "|---|---|---|---|---|---|---|---|---|",
            *rows,
        ]
    )
    print(table)
    print(f"load average (1 min) before / after: {load_before:.2f} / {load_after:.2f}")
    if not args.no_write:
        command = (
            f"python bench/dataset_upload.py --sizes {args.sizes} --backends {args.backends} "
            f"--repeat {args.repeat} --validation-mib {args.validation_mib} --s3 {args.s3}"
        )
        s3_name = f"SeaweedFS {weed_version()} (`weed mini`)" if args.s3 == "seaweedfs" else "moto's server"
        write_section(
            "dataset_upload",
            "Dataset service: validation, and streamed, validated uploads vs a direct put",
            f"The machine is shared with other work: 1-minute load average {load_before:.2f} before, "
            f"{load_after:.2f} after, on 2 cores, so absolute figures are low and noisy; the ratios, "
            "each measured in the same run, are what carries over.\n\n"
            f"**Validation alone**: the same generated chat file ({args.validation_mib} MiB, about 500 "
            "bytes a line, three plain messages each) held in memory, fed in 1 MiB chunks to each "
            f"validator in turn, {args.repeat} rounds. Profile, share of own time (cProfile): {profile}. "
            "The batch reader's decoding and counting run in C inside `read_batch` (msgspec structs, "
            "map/chain), so they show as one entry (cProfile charges the freeing of a function's "
            "locals to its caller, where freeing what `read_batch` decoded can show). "
            "Targets: 5x, 500 MiB/s. The floor row is the batch reader's own msgspec decoder run "
            "over every line with nothing checked or counted: no msgspec validator does less per "
            "core, and two worker processes on two cores (beside the process feeding them) can at "
            "best double it.\n\n"
            f"{validation_table}\n\n"
            f"**Uploads**: median of {args.repeat} runs per row. The file goes through "
            "`python -m services.dataset` over gRPC in 1 MiB chunks, validated in its "
            "worker processes (`TAILOR_DATASET_VALIDATION_PROCESSES`, default 2), hashed, stored and "
            "recorded; the direct side writes the same bytes into the same store with no service. Each "
            "side runs in its own process; peak RSS is VmHWM (the service process, and the largest of "
            f"its validation workers). S3 is {s3_name} on loopback, sharing the CPU. The measured "
            "upload follows one 4 MiB upload that starts the validation workers. CPU ms/MiB is the "
            "user + system time of each process during the upload (client: the uploading script; "
            "store: the S3 server; writer: the direct side's process) per MiB: on a machine whose "
            "cores all processes share, the throughput ratio can be no better than the ratio of "
            "these totals, and validation alone costs more per MiB than the direct write on the "
            "filesystem does in all.",
            table,
            command,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
