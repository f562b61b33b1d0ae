"""The lock files in requirements/ still satisfy pyproject.toml, and this environment is the lock.

Each ``requirements/<profile>.txt`` is compiled by ``make lock`` (pip-tools) from
pyproject.toml's extras, named in the command line pip-compile writes at its top, and
from the ``.in`` files it lists. When someone edits a range in pyproject.toml and forgets
``make lock``, the requirement and its pin disagree and a test here names both.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = ROOT / "requirements"
LOCKS = sorted(REQUIREMENTS.glob("*.txt"))
PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>\S+)\s*$")


def pins(lock: Path) -> dict[str, Version]:
    """Every ``name==version`` line of a lock file, by canonical name."""
    found = {}
    for line in lock.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            match = PIN.match(line)
            assert match, f"{lock.name}: not an exact pin: {line!r}"
            found[canonicalize_name(match["name"])] = Version(match["version"])
    return found


def compile_command(lock: Path) -> list[str]:
    """The pip-compile arguments recorded in the lock's header."""
    header = lock.read_text().split("\n\n", 1)[0]
    match = re.search(r"^#\s+(pip-compile .*)$", header, re.M)
    assert match, f"{lock.name} has no pip-compile command in its header: recompile it with `make lock`"
    return shlex.split(match[1])


def project_requirements(pyproject: str, extras: list[str]) -> list[Requirement]:
    """pyproject.toml's dependencies plus those of ``extras``, following ``tailor[...]`` references."""
    project = tomllib.loads(pyproject)["project"]
    optional = project["optional-dependencies"]
    wanted, seen, found = list(extras), set(), [Requirement(r) for r in project["dependencies"]]
    while wanted:
        extra = wanted.pop()
        if extra in seen:
            continue
        seen.add(extra)
        assert extra in optional, f"the lock names an extra pyproject.toml no longer has: {extra}"
        for text in optional[extra]:
            requirement = Requirement(text)
            if canonicalize_name(requirement.name) == canonicalize_name(project["name"]):
                wanted.extend(requirement.extras)
            else:
                found.append(requirement)
    return found


def inputs_of(command: list[str]) -> tuple[list[str], list[Requirement]]:
    """The extras and the requirements of the ``.in`` files a pip-compile command names."""
    extras = [arg.split("=", 1)[1] for arg in command if arg.startswith("--extra=")]
    extras += [command[i + 1] for i, arg in enumerate(command) if arg == "--extra"]
    requirements = []
    for arg in command:
        if arg.endswith(".in"):
            for line in (ROOT / arg).read_text().splitlines():
                if line.strip() and not line.startswith("#"):
                    requirements.append(Requirement(line))
    return extras, requirements


def test_every_install_profile_has_a_lock() -> None:
    assert {lock.stem for lock in LOCKS} >= {
        "dev",
        "bench",
        "gateway",
        "dataset",
        "trainer",
        "inference",
        "worker-cuda",
    }


def stale_requirements(lock: Path, pyproject: str) -> list[str]:
    """What in ``pyproject`` (the text of a pyproject.toml) the lock's pins do not satisfy."""
    command = compile_command(lock)
    assert "pyproject.toml" in command
    extras, from_inputs = inputs_of(command)
    pinned = pins(lock)
    problems = []
    for requirement in project_requirements(pyproject, extras) + from_inputs:
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        name = canonicalize_name(requirement.name)
        if name not in pinned:
            problems.append(f"{requirement} is not pinned")
        elif not requirement.specifier.contains(pinned[name], prereleases=True):
            problems.append(f"{requirement} but the lock pins {pinned[name]}")
    return problems


@pytest.mark.parametrize("lock", LOCKS, ids=lambda lock: lock.stem)
def test_each_lock_satisfies_pyproject(lock: Path) -> None:
    problems = stale_requirements(lock, (ROOT / "pyproject.toml").read_text())
    assert not problems, f"{lock.name} is stale, run `make lock`: " + "; ".join(problems)


def test_a_range_moved_past_its_pin_or_a_new_dependency_is_reported() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    transformers = re.search(r'"transformers[^"]*"', pyproject)
    assert transformers
    edited = pyproject.replace(transformers[0], '"transformers>=99"').replace(
        '"pytest>=', '"left-pad-not-locked>=1", "pytest>='
    )
    problems = stale_requirements(REQUIREMENTS / "dev.txt", edited)
    assert any(p.startswith("transformers>=99 but the lock pins") for p in problems), problems
    assert "left-pad-not-locked>=1 is not pinned" in problems


def test_the_build_backend_is_pinned_like_the_locks() -> None:
    build = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    assert all("==" in requirement for requirement in build), build
    dev = pins(REQUIREMENTS / "dev.txt")
    for text in build:
        requirement = Requirement(text)
        assert requirement.specifier.contains(dev[canonicalize_name(requirement.name)])


def test_every_profile_runs_the_versions_dev_was_tested_with() -> None:
    dev = pins(REQUIREMENTS / "dev.txt")
    for lock in LOCKS:
        for name, version in pins(lock).items():
            if name in dev and not (lock.stem == "worker-cuda" and name == "torch"):
                assert version == dev[name], f"{lock.name} pins {name}=={version}, dev.txt {dev[name]}"


def test_this_environment_is_installed_from_the_dev_lock() -> None:
    # `make test` installs requirements/dev.txt; a test run in anything else proves less.
    differing = {}
    for name, version in pins(REQUIREMENTS / "dev.txt").items():
        try:
            installed = Version(metadata.version(name))
        except metadata.PackageNotFoundError:
            installed = None
        if installed != version:
            differing[name] = f"lock {version}, installed {installed}"
    assert not differing, f"run `make install`: {differing}"


def test_a_range_in_a_lock_is_refused(tmp_path: Path) -> None:
    broken = tmp_path / "broken.txt"
    broken.write_text("transformers>=5\n")
    with pytest.raises(AssertionError, match="not an exact pin"):
        pins(broken)
