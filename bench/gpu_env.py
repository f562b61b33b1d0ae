"""What the GPU check imports, checked before device time is spent and again on the device.

A lent GPU machine has no registry: whatever its image lacks travels as wheels
(bench/gpu_wheels.txt), and a missing one costs a rerun out of a 15-minute budget.

- ``closure --image LIST --wheels DIR`` (here, no GPU): imports :data:`MODULES` while refusing
  any third-party module whose distribution is neither in the image's package list (names, one
  per line or comma-separated, as KINDS.md gives them) nor among the wheels in DIR. Optional
  imports the libraries guard with try/except are refused as they would be there. Exit 1 and
  the missing distributions if the closure is not covered.
- ``smoke`` (on the device): imports :data:`MODULES` for real and prints the versions that
  matter; exit 1 naming what failed to import.

    python bench/gpu_env.py closure --image image_packages.txt --wheels .whl
    python3 bench/gpu_env.py smoke
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.abc
import importlib.metadata
import importlib.util
import re
import sys
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# What bench/train_throughput.py's parent and arms, tests/conftest.py and tests/gpu import.
MODULES = (
    "bench.train_throughput",
    "services.common.tailor_tiny",
    "services.common.tailor_tiny.build",
    "services.trainer.worker.training",
    "services.trainer.worker.data",
    "services.trainer.worker.models",
    "services.trainer.worker.lora",
    "peft",
    "trl",
    "datasets",
    "tests.conftest",
    "tests.integration.inference.adapter_factory",
    "services.inference.engine",
    "services.inference.sampling",
    "services.inference.hf_engine",
    "pytest_asyncio",
)
# Imported here only because the lock's huggingface-hub (2.x) uses them; the image keeps its own
# hub (1.33, within transformers' range), which uses httpx, on the image.
HERE_ONLY = {"httpx2", "httpcore2", "truststore", "sniffio"}
VERSIONS = ("torch", "transformers", "peft", "trl", "datasets", "accelerate", "huggingface-hub",
            "tokenizers", "protobuf", "grpcio", "pytest", "pytest-asyncio", "vllm")  # fmt: skip


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def wheel_distributions(directory: Path) -> set[str]:
    """Distribution names of the wheels (and split wheels' pieces) in ``directory``."""
    return {normalized(path.name.split("-")[0]) for path in directory.glob("*.whl*")}


class Refuse(importlib.abc.MetaPathFinder):
    """Refuses top-level modules of distributions the GPU machine would not have."""

    def __init__(self, allowed: set[str]) -> None:
        self.owners = {
            module: {normalized(d) for d in dists}
            for module, dists in importlib.metadata.packages_distributions().items()
        }
        self.allowed = allowed
        self.refused: dict[str, set[str]] = {}

    def find_spec(self, fullname, path=None, target=None):  # type: ignore[no-untyped-def]
        top = fullname.split(".")[0]
        owners = self.owners.get(top, set())
        if "." in fullname or not self.refuses(top):
            return None  # submodules, the repository's own packages, the standard library, allowed ones
        self.refused.setdefault(top, set()).update(owners)
        raise ModuleNotFoundError(f"{top} ({', '.join(sorted(owners))}) is not on the GPU machine", name=fullname)

    def refuses(self, top: str) -> bool:
        """The repository's own packages (distribution tailor), the standard library and allowed ones pass."""
        owners = self.owners.get(top)
        return bool(owners) and not owners & (self.allowed | {"tailor"})

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """Refuse imports, and answer availability checks (``importlib.util.find_spec``) with None for them."""
        find_spec = importlib.util.find_spec

        def guarded(name, package=None):  # type: ignore[no-untyped-def]
            if self.refuses(name.split(".")[0]):
                return None
            return find_spec(name, package)

        sys.meta_path.insert(0, self)
        importlib.util.find_spec = guarded  # type: ignore[assignment]
        try:
            yield
        finally:
            importlib.util.find_spec = find_spec
            sys.meta_path.remove(self)


def closure(image_list: Path, wheels: Path) -> int:
    image = {normalized(n) for n in re.split(r"[,\s]+", image_list.read_text()) if n.strip(" .")}
    carried = wheel_distributions(wheels)
    guard = Refuse(image | carried | HERE_ONLY)
    failed = []
    with guard.installed():
        for module in MODULES:
            try:
                importlib.import_module(module)
            except ImportError as error:
                failed.append(f"{module}: {error}")
    for top, owners in sorted(guard.refused.items()):
        print(f"refused {top} ({', '.join(sorted(owners))})")
    for line in failed:
        print(f"FAILED {line}")
    print(f"{len(MODULES) - len(failed)}/{len(MODULES)} modules import from the image + {len(carried)} wheels")
    return 1 if failed else 0


def smoke() -> int:
    failed = []
    for module in MODULES:
        try:
            importlib.import_module(module)
        except Exception as error:  # noqa: BLE001 - every failure is reported, the first ends nothing
            failed.append(f"{module}: {type(error).__name__}: {error}")
    for name in VERSIONS:
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            version = "not installed"
        print(f"{name} {version}")
    for line in failed:
        print(f"FAILED {line}")
    return 1 if failed else 0


def main() -> int:
    sys.path.insert(0, str(REPO))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("closure")
    check.add_argument("--image", type=Path, required=True)
    check.add_argument("--wheels", type=Path, required=True)
    commands.add_parser("smoke")
    args = parser.parse_args()
    return closure(args.image, args.wheels) if args.command == "closure" else smoke()


if __name__ == "__main__":
    sys.exit(main())
