"""Generates the Python protobuf and gRPC code from protos/ (``make proto``).

The generated modules are committed beside the .proto files, so ``tailor.<domain>.v1``
imports without a build step and schema changes show up in review. A test
regenerates into a temporary directory and fails when the committed code is stale.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

PROTO_ROOT = Path(__file__).resolve().parents[2] / "protos"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def proto_files(root: Path = PROTO_ROOT) -> list[Path]:
    return sorted(root.rglob("*.proto"))


def generate(out_dir: Path, root: Path = PROTO_ROOT) -> list[Path]:
    """Runs protoc over every .proto under ``root``; returns the generated files."""
    # Imported here so that importing this module (for PROTO_ROOT) needs no grpc-tools.
    import grpc_tools
    from grpc_tools import protoc

    well_known = Path(grpc_tools.__file__).parent / "_proto"
    sources = [str(p.relative_to(root)) for p in proto_files(root)]
    out_dir.mkdir(parents=True, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"-I{root}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *sources,
    ]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed; see the messages above")
    # Every directory on the way down is a regular package, so the code imports as tailor.<domain>.v1.
    for source in sources:
        for package_dir in Path(source).parents:
            if str(package_dir) != ".":
                (out_dir / package_dir / "__init__.py").touch()
    return generated_files(out_dir)


def generated_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.name.endswith(GENERATED_SUFFIXES))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=PROTO_ROOT, help="output root (default: protos/)")
    args = parser.parse_args(argv)
    files = generate(args.out)
    print(f"generated {len(files)} files under {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
