"""Upload a large generated JSONL file to a dataset service in its own process; report time and memory.

Used by the flat-memory test (test_large_upload.py) and by bench/dataset_upload.py:

    python tests/integration/dataset/large_upload.py --size-mib 1024 --data-dir DIR
    python tests/integration/dataset/large_upload.py --size-mib 256 --data-dir DIR \\
        --endpoint HOST:PORT --bucket B        # the S3 backend (loopback test server)

The service runs as ``python -m services.dataset``, exactly as deployed, so the peak
resident set size reported (its VmHWM, see tests/integration/object_store_roundtrip.py
for why not ru_maxrss) is the service's alone; its validation worker processes are
reported separately. The file is valid chat fine-tuning data,
generated on the fly from a block of distinct examples repeated as often as needed and
cut into 1 MiB chunks at arbitrary points (so lines straddle chunks, as from a real
client); neither side ever holds the whole file. The measured upload follows one small
upload that starts the service's validation workers; its time and the CPU time of each
process (this client, the service, its workers) are those of the measured upload alone.
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import resource
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import psutil
from grpc_health.v1 import health_pb2, health_pb2_grpc

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))

from services.common.grpc_client import open_channel  # noqa: E402
from services.common.settings import CommonSettings  # noqa: E402
from services.common.tenancy import call_context  # noqa: E402
from tailor.dataset.v1 import dataset_service_pb2 as pb  # noqa: E402
from tailor.dataset.v1 import dataset_service_pb2_grpc as pb_grpc  # noqa: E402
from tests.support import internal_auth  # noqa: E402
from tests.support.processes import free_port  # noqa: E402

# The service verifies, and this process signs, with the test key set (also when run as a script).
internal_auth.install()

MiB = 1 << 20
CHUNK_BYTES = MiB
ORGANIZATION = "org-large"
_WORDS = "the quick brown fox jumps over a lazy dog while Paris stays the capital of France".split()


def chat_examples_block(approx_bytes: int, seed: int = 7) -> tuple[bytes, int]:
    """Distinct valid chat examples, one per line, about ``approx_bytes`` long; and their count."""
    rng = random.Random(seed)
    lines: list[bytes] = []
    size = 0
    while size < approx_bytes:
        example = {
            "messages": [
                {"role": "system", "content": "Marv is a factual chatbot that is also sarcastic."},
                {"role": "user", "content": " ".join(rng.choices(_WORDS, k=rng.randint(5, 40)))},
                {"role": "assistant", "content": " ".join(rng.choices(_WORDS, k=rng.randint(5, 80)))},
            ]
        }
        line = json.dumps(example).encode() + b"\n"
        lines.append(line)
        size += len(line)
    return b"".join(lines), len(lines)


def jsonl_chunks(block: bytes, repeats: int, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
    """``block`` ``repeats`` times over, cut into ``chunk_bytes`` chunks wherever they fall."""
    total = len(block) * repeats
    doubled = block + block
    position = 0
    while position < total:
        size = min(chunk_bytes, total - position)
        # A chunk may wrap around the end of the block: read it from the doubled copy.
        offset = position % len(block)
        if size <= len(block):
            chunk = doubled[offset : offset + size]
        else:
            chunk = (doubled * (size // len(block) + 2))[offset : offset + size]
        position += size
        yield chunk


def peak_rss_kib(pid: int) -> int:
    """VmHWM of process ``pid``: the peak resident set size of its own address space."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmHWM for process {pid}")


class DatasetProcess:
    """``python -m services.dataset`` in a child process, on a free loopback port."""

    def __init__(self, environment: dict[str, str], address: str | None = None) -> None:
        # A given address lets a restarted service take its predecessor's place.
        self.address = address or f"127.0.0.1:{free_port()}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("TAILOR_")}
        # The keys this process signs with: install() keeps a key set inherited from a parent
        # test process, so the service must verify with what is in the environment, not KEYS.
        env.update({k: v for k, v in os.environ.items() if k.startswith("TAILOR_INTERNAL_AUTH_")})
        env["TAILOR_INTERNAL_AUTH_IDENTITY"] = "dataset"
        env.update(environment, TAILOR_DATASET_LISTEN=self.address, TAILOR_LOG_LEVEL="warning")
        env["PYTHONPATH"] = str(REPO)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "services.dataset"], cwd=REPO, env=env, stdout=subprocess.DEVNULL
        )

    async def wait_until_serving(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        async with grpc.aio.insecure_channel(self.address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"the dataset service exited with {self.process.returncode}")
                try:
                    response = await health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    if response.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.aio.AioRpcError:
                    pass
                await asyncio.sleep(0.1)
        raise TimeoutError("the dataset service did not become ready")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


async def upload(address: str, chunks: Iterator[bytes], filename: str) -> pb.File:
    """Stream ``chunks`` to the service as one fine-tuning file; its record."""

    async def requests() -> AsyncIterator[pb.UploadFileRequest]:
        yield pb.UploadFileRequest(
            metadata=pb.UploadFileMetadata(filename=filename, purpose=pb.FILE_PURPOSE_FINE_TUNE)
        )
        for chunk in chunks:
            yield pb.UploadFileRequest(chunk=chunk)
        yield pb.UploadFileRequest(end=pb.UploadFileEnd())

    channel = open_channel(address, CommonSettings())
    try:
        with call_context(ORGANIZATION, None):
            response = await pb_grpc.DatasetServiceStub(channel).UploadFile(requests(), timeout=3600)
    finally:
        await channel.close()
    return response.file


async def measure(environment: dict[str, str], size_mib: int) -> dict[str, object]:
    block, examples_per_block = chat_examples_block(4 * MiB + 12_345)
    repeats = max(1, round(size_mib * MiB / len(block)))
    service = DatasetProcess(environment)
    try:
        await service.wait_until_serving()
        idle_rss_kib = peak_rss_kib(service.process.pid)
        # One block first: the service starts its validation workers at its first fine-tuning
        # upload, which would otherwise count their start-up in the measured upload's time and CPU.
        await upload(service.address, jsonl_chunks(block, 1), "warm-up.jsonl")
        cpu_before = cpu_seconds_by_process(service.process.pid)
        started = time.perf_counter()
        record = await upload(service.address, jsonl_chunks(block, repeats), f"large-{size_mib}mib.jsonl")
        seconds = time.perf_counter() - started
        cpu_after = cpu_seconds_by_process(service.process.pid)
        service_peak_kib = peak_rss_kib(service.process.pid)
        worker_peaks_kib = [
            peak_rss_kib(worker.pid) for worker in psutil.Process(service.process.pid).children()
        ]
    finally:
        service.stop()
    return {
        "size_bytes": record.bytes,
        "expected_bytes": len(block) * repeats,
        "status": pb.FileStatus.Name(record.status),
        "status_details": record.status_details,
        "examples": record.statistics.examples,
        "expected_examples": examples_per_block * repeats,
        "seconds": round(seconds, 3),
        "mib_per_s": round(record.bytes / MiB / seconds, 1),
        "service_idle_rss_kib": idle_rss_kib,
        "service_peak_rss_kib": service_peak_kib,
        # The validation worker processes (see services/dataset/parallel_validation.py).
        "worker_peak_rss_kib": worker_peaks_kib,
        # CPU time (user + system) spent during the upload, by process: where a machine's cores go.
        "cpu_seconds": {
            name: round(cpu_after[name] - cpu_before.get(name, 0.0), 3) for name in cpu_after
        },
    }


def cpu_seconds_by_process(service_pid: int) -> dict[str, float]:
    """User + system CPU seconds so far of this process (the client), the service and its children."""
    client = resource.getrusage(resource.RUSAGE_SELF)
    service = psutil.Process(service_pid)
    children = 0.0
    for child in service.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            times = child.cpu_times()
            children += times.user + times.system
    times = service.cpu_times()
    return {
        "client": client.ru_utime + client.ru_stime,
        "service": times.user + times.system,
        "workers": children,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, required=True)
    parser.add_argument("--data-dir", required=True, help="the service's data directory")
    parser.add_argument(
        "--endpoint", default="", help="host:port of an S3 server (default: filesystem store)"
    )
    parser.add_argument("--bucket", default="large-upload")
    parser.add_argument("--access-key", default="tailor-test")
    parser.add_argument("--secret-key", default="tailor-test-secret")
    args = parser.parse_args()

    environment = {"TAILOR_DATA_DIR": args.data_dir}
    if args.endpoint:
        environment.update(
            TAILOR_OBJECT_STORE_ENDPOINT=args.endpoint,
            TAILOR_OBJECT_STORE_BUCKET=args.bucket,
            TAILOR_OBJECT_STORE_ACCESS_KEY=args.access_key,
            TAILOR_OBJECT_STORE_SECRET_KEY=args.secret_key,
            TAILOR_OBJECT_STORE_REGION="us-east-1",
        )
    report = asyncio.run(measure(environment, args.size_mib))
    report.update(backend="s3" if args.endpoint else "fs", size_mib=args.size_mib)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
