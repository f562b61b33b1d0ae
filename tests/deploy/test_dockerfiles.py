"""The images' Dockerfiles follow the rules, checked on the files (no Docker engine here).

Each Dockerfile is parsed into stages (``FROM ... AS name`` with the instructions that
follow, continuation lines joined, ``ARG`` defaults substituted) and checked: several
stages, every base pinned to a version, a non-root numeric user in the final stage, no
compilers installed in it, no torch in the gateway and dataset images, a vLLM/CUDA base
for the GPU inference image, torch + transformers + peft in the training image, and
the project installed with its own extras, from the exact versions of its lock file.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

DOCKER = Path(__file__).resolve().parents[2] / "deploy" / "docker"
IMAGES = ("gateway", "dataset", "trainer", "worker", "inference", "inference-gpu")
EXTRAS = {
    "gateway": "gateway",
    "dataset": "dataset",
    "trainer": "trainer",
    "worker": "trainer",
    "inference": "inference",
    "inference-gpu": "vllm",
}
# The lock file of requirements/ that each image installs before the project (--no-deps).
# inference-gpu keeps the torch and vLLM of its vLLM base image.
LOCKS = {
    "gateway": "gateway",
    "dataset": "dataset",
    "trainer": "trainer",
    "worker": "worker-cuda",
    "inference": "inference",
}
BUILD_TOOLS = re.compile(r"\b(gcc|g\+\+|build-essential|clang|make|cmake|cc|python3?-dev|libc6-dev)\b")
TAG = re.compile(r"^(?P<name>[\w./-]+?)(:(?P<tag>[\w.-]+))?(@sha256:(?P<digest>[0-9a-f]{64}))?$")


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def run(self) -> str:
        """Everything this stage RUNs, as one string."""
        return "\n".join(args for op, args in self.instructions if op == "RUN")


def parse(path: Path) -> list[Stage]:
    """The stages of a Dockerfile, with global ARG defaults substituted into FROM lines."""
    text = re.sub(r"\\\n", " ", path.read_text())
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        op, _, args = line.partition(" ")
        op = op.upper()
        if op == "ARG" and not stages:
            name, _, default = args.partition("=")
            global_args[name.strip()] = default.strip()
        elif op == "FROM":
            image = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: global_args[m.group(1) or m.group(2)], args)
            parts = image.split()
            stages.append(
                Stage(base=parts[0], name=parts[2] if len(parts) > 2 and parts[1].upper() == "AS" else None)
            )
        elif stages:
            stages[-1].instructions.append((op, args))
    return stages


def stages_of(image: str) -> list[Stage]:
    return parse(DOCKER / f"{image}.Dockerfile")


def test_every_image_has_a_dockerfile_and_an_ignore_file() -> None:
    assert sorted(p.name.removesuffix(".Dockerfile") for p in DOCKER.glob("*.Dockerfile")) == sorted(IMAGES)
    for image in IMAGES:
        ignore = (DOCKER / f"{image}.Dockerfile.dockerignore").read_text()
        assert "!services/**" in ignore and "!protos/**" in ignore


@pytest.mark.parametrize("image", IMAGES)
def test_multi_stage_with_pinned_bases(image: str) -> None:
    stages = stages_of(image)
    assert len(stages) >= 2, "build and runtime stages"
    names = {s.name for s in stages}
    for stage in stages:
        if stage.base in names:  # FROM an earlier stage
            continue
        match = TAG.match(stage.base)
        assert match, stage.base
        tag = match.group("tag")
        assert match.group("digest") or (tag and tag != "latest" and re.search(r"\d", tag)), stage.base


@pytest.mark.parametrize("image", IMAGES)
def test_final_stage_is_non_root_and_copies_only_the_built_environment(image: str) -> None:
    final = stages_of(image)[-1]
    users = [args for op, args in final.instructions if op == "USER"]
    assert users, "the final stage sets USER"
    user = users[-1].split(":")[0]
    # numeric, so that runAsNonRoot can verify it, and the uid the manifests run as
    assert user.isdigit() and int(user) == 10001
    assert not BUILD_TOOLS.search(final.run()), final.run()
    assert "pip install" not in final.run()
    copies = [args for op, args in final.instructions if op == "COPY"]
    assert copies and all(c.startswith("--from=build ") for c in copies), copies
    entrypoint = [args for op, args in final.instructions if op == "ENTRYPOINT"]
    assert entrypoint and '"-m"' in entrypoint[-1] and "services." in entrypoint[-1]


@pytest.mark.parametrize("image", IMAGES)
def test_the_project_is_installed_with_its_extra(image: str) -> None:
    build = stages_of(image)[0].run()
    assert re.search(rf'pip install (--no-deps )?"\.\[{EXTRAS[image]}\]"', build), build


@pytest.mark.parametrize("image", sorted(LOCKS))
def test_images_install_the_exact_versions_of_their_lock_before_the_project(image: str) -> None:
    build = stages_of(image)[0]
    lock = f"requirements/{LOCKS[image]}.txt"
    runs = [args for op, args in build.instructions if op == "RUN"]
    installs_lock = next(i for i, run in enumerate(runs) if f"-r {lock}" in run)
    installs_project = next(i for i, run in enumerate(runs) if '".[' in run)
    assert installs_lock < installs_project
    assert '--no-deps ".[' in runs[installs_project], "pip must not resolve again after the lock"
    assert (DOCKER.parents[1] / lock).is_file()
    assert f"!{lock.rsplit('/', 1)[0]}/*.txt" in (DOCKER / f"{image}.Dockerfile.dockerignore").read_text()


@pytest.mark.parametrize("image", ["gateway", "dataset"])
def test_gateway_and_dataset_images_carry_no_torch(image: str) -> None:
    for stage in stages_of(image):
        assert "torch" not in stage.run().lower()
        assert "cuda" not in stage.base.lower() and "vllm" not in stage.base.lower()


def test_the_gpu_inference_image_starts_from_a_vllm_cuda_base() -> None:
    stages = stages_of("inference-gpu")
    assert all(s.base.startswith("vllm/vllm-openai:v0.32.") for s in stages)
    assert 'pip install ".[vllm]"' in stages[0].run()


def lock_pins(lock: str) -> dict[str, str]:
    text = (DOCKER.parents[1] / "requirements" / f"{lock}.txt").read_text()
    return dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", text, re.M))


def test_cpu_images_install_the_cpu_build_of_torch() -> None:
    for image in ("trainer", "inference"):
        assert "download.pytorch.org/whl/cpu" in Path(DOCKER / f"{image}.Dockerfile").read_text()
        assert lock_pins(LOCKS[image])["torch"].endswith("+cpu")
        assert not any(name.startswith("nvidia-") for name in lock_pins(LOCKS[image]))


def test_the_training_image_carries_torch_transformers_and_peft() -> None:
    build = stages_of("worker")[0].run()
    assert "-r requirements/worker-cuda.txt" in build and '".[trainer]"' in build
    assert "import torch, transformers, peft" in build
    # the same torch release as everywhere else, in its CUDA build with its runtime wheels
    pins = lock_pins("worker-cuda")
    assert pins["torch"] == lock_pins("dev")["torch"].removesuffix("+cpu")
    assert any(name.startswith("nvidia-cublas") for name in pins)
    # the trainer extra is what brings transformers and peft
    extras = tomllib.loads((DOCKER.parents[1] / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(dep.startswith("transformers") for dep in extras["ml"])
    assert any(dep.startswith("peft") for dep in extras["ml"])
    included = {name for dep in extras["trainer"] if dep.startswith("tailor[") for name in dep[7:-1].split(",")}
    assert {"ml", "trackers"} <= included
    # what the worker's lock therefore pins: the model stack and the tracker clients of `integrations`
    assert {"transformers", "peft", "wandb", "mlflow-skinny"} <= set(pins)


def test_the_parser_sees_what_the_rules_forbid(tmp_path: Path) -> None:
    bad = tmp_path / "bad.Dockerfile"
    bad.write_text(
        "ARG BASE=python:latest\n"
        "FROM ${BASE}\n"
        "RUN apt-get update && apt-get install -y \\\n    build-essential\n"
        "USER root\n"
    )
    (stage,) = parse(bad)
    assert stage.base == "python:latest" and stage.name is None
    assert BUILD_TOOLS.search(stage.run())
    assert [args for op, args in stage.instructions if op == "USER"] == ["root"]
