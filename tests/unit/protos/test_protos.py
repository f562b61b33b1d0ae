"""The contracts: the committed generated code is fresh, and the protos follow the conventions.

Conventions (DESIGN.md, buf's STANDARD lint): package ``tailor.<domain>.v1`` matching
the directory, at most one service per file, service names ending in ``Service``,
``VerbNoun`` RPCs taking ``<Rpc>Request`` and returning ``<Rpc>Response`` (unique
per RPC), enum values prefixed with the enum's name and ``*_UNSPECIFIED = 0``, and
a comment on every service, RPC, message, field, enum and enum value.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import grpc_tools
import pytest
from google.protobuf import descriptor_pb2

from services.common.protogen import PROTO_ROOT, generate, generated_files, proto_files

VERBS = {
    "Create", "Get", "List", "Delete", "Update", "Upload", "Download", "Cancel", "Pause",
    "Resume", "Resolve", "Generate", "Load", "Unload", "Claim", "Report", "Record",
}  # fmt: skip


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    generate(tmp_path)
    fresh = {p.relative_to(tmp_path): p.read_bytes() for p in generated_files(tmp_path)}
    committed = {p.relative_to(PROTO_ROOT): p.read_bytes() for p in generated_files(PROTO_ROOT)}
    assert sorted(fresh) == sorted(committed), "generated files differ in name: run `make proto`"
    stale = [str(name) for name, content in fresh.items() if committed[name] != content]
    assert not stale, f"stale generated code (run `make proto`): {stale}"


def test_generated_code_imports_in_a_clean_interpreter() -> None:
    modules = [
        ".".join(p.relative_to(PROTO_ROOT).with_suffix("").parts)
        for p in generated_files(PROTO_ROOT)
        if p.suffix == ".py"
    ]
    code = "import importlib,sys\nfor m in sys.argv[1:]: importlib.import_module(m)"
    subprocess.run([sys.executable, "-c", code, *modules], check=True)


@pytest.fixture(scope="module")
def descriptor_set(tmp_path_factory: pytest.TempPathFactory) -> descriptor_pb2.FileDescriptorSet:
    from grpc_tools import protoc

    out = tmp_path_factory.mktemp("descriptors") / "set.pb"
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    sources = [str(p.relative_to(PROTO_ROOT)) for p in proto_files()]
    rc = protoc.main(
        ["protoc", f"-I{PROTO_ROOT}", f"-I{well_known}", "--include_source_info",
         f"--descriptor_set_out={out}", *sources]
    )  # fmt: skip
    assert rc == 0
    files = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    assert len(files.file) == len(sources) >= 5
    return files


def test_packages_are_versioned_and_match_directories(descriptor_set: descriptor_pb2.FileDescriptorSet) -> None:
    for f in descriptor_set.file:
        assert re.fullmatch(r"tailor\.[a-z]+\.v\d+", f.package), f.name
        assert str(Path(f.name).parent).replace("/", ".") == f.package, f.name


def test_services_and_rpcs_are_named_by_convention(descriptor_set: descriptor_pb2.FileDescriptorSet) -> None:
    seen_types: set[str] = set()
    for f in descriptor_set.file:
        assert len(f.service) <= 1, f"{f.name}: one service per file"
        for service in f.service:
            assert service.name.endswith("Service"), service.name
            assert f.name.endswith(_snake(service.name) + ".proto"), f"{f.name} should be named after {service.name}"
            for rpc in service.method:
                verb = re.match(r"[A-Z][a-z]+", rpc.name).group(0)  # type: ignore[union-attr]
                assert verb in VERBS and rpc.name != verb, f"{rpc.name} is not VerbNoun"
                assert rpc.input_type == f".{f.package}.{rpc.name}Request", rpc.name
                assert rpc.output_type == f".{f.package}.{rpc.name}Response", rpc.name
                assert rpc.input_type not in seen_types and rpc.output_type not in seen_types
                seen_types.update((rpc.input_type, rpc.output_type))


def test_enums_are_prefixed_and_start_unspecified(descriptor_set: descriptor_pb2.FileDescriptorSet) -> None:
    enums = [e for f in descriptor_set.file for e in f.enum_type]
    enums += [e for f in descriptor_set.file for m in f.message_type for e in m.enum_type]
    assert enums
    for enum in enums:
        prefix = _snake(enum.name).upper() + "_"
        assert enum.value[0].number == 0 and enum.value[0].name == prefix + "UNSPECIFIED", enum.name
        for value in enum.value:
            assert value.name.startswith(prefix), f"{enum.name}.{value.name}"


def test_everything_is_commented(descriptor_set: descriptor_pb2.FileDescriptorSet) -> None:
    missing = []
    for f in descriptor_set.file:
        commented = {
            tuple(loc.path) for loc in f.source_code_info.location if loc.leading_comments.strip()
        }
        for path, name in _declarations(f):
            if path not in commented:
                missing.append(f"{f.name}: {name}")
    assert not missing, "declarations without a leading comment:\n" + "\n".join(missing)


def _declarations(f: descriptor_pb2.FileDescriptorProto):  # type: ignore[no-untyped-def]
    """(source path, name) of every service, rpc, message, field, enum and enum value."""
    # Field numbers of FileDescriptorProto / DescriptorProto / ... used in source_code_info paths.
    for i, service in enumerate(f.service):
        yield (6, i), service.name
        for j, rpc in enumerate(service.method):
            yield (6, i, 2, j), f"{service.name}.{rpc.name}"
    for i, enum in enumerate(f.enum_type):
        yield from _enum_declarations((5, i), enum)
    for i, message in enumerate(f.message_type):
        yield from _message_declarations((4, i), message)


def _message_declarations(path, message):  # type: ignore[no-untyped-def]
    yield path, message.name
    for j, field in enumerate(message.field):
        yield (*path, 2, j), f"{message.name}.{field.name}"
    for j, nested in enumerate(message.nested_type):
        if not nested.options.map_entry:
            yield from _message_declarations((*path, 3, j), nested)
    for j, enum in enumerate(message.enum_type):
        yield from _enum_declarations((*path, 4, j), enum)


def _enum_declarations(path, enum):  # type: ignore[no-untyped-def]
    yield path, enum.name
    for k, value in enumerate(enum.value):
        yield (*path, 2, k), f"{enum.name}.{value.name}"


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
