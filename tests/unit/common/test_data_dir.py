"""The data directory is private: umask 0o077 at start, an older looser one tightened, built models too."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.common.data_dir import PRIVATE_UMASK, current_umask, make_data_dir_private, tighten_data_dir
from services.common.object_store.base import commit_temp_file, open_temp_file
from services.common.tiny_models import building


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.fixture(autouse=True)
def restore_umask() -> Iterator[None]:
    before = os.umask(0o022)
    yield
    os.umask(before)


def test_a_new_data_dir_is_0700_and_what_is_written_in_it_0600(tmp_path: Path) -> None:
    data_dir = tmp_path / "fresh" / ".tailor"
    make_data_dir_private(data_dir)
    assert current_umask() == PRIVATE_UMASK
    assert mode(data_dir) == 0o700
    # as the filesystem object store writes an object: a temp file in a new directory, renamed
    target = data_dir / "objects" / "orgs" / "org-a" / "files" / "file-1"
    temp = open_temp_file(target)
    temp.write(b"customer data")
    commit_temp_file(temp, target)
    for path in (data_dir / "objects", target.parent, target):
        assert mode(path) & 0o077 == 0, f"{path} is {oct(mode(path))}"


def test_an_old_world_readable_data_dir_is_tightened_at_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "old"
    (data_dir / "objects" / "orgs").mkdir(parents=True)
    (data_dir / "objects" / "orgs" / "file").write_text("x")
    (data_dir / "records").mkdir()
    (data_dir / "records" / "trainer.db").write_text("x")
    (data_dir / "link").symlink_to("/etc/hostname")
    for path in (data_dir, data_dir / "objects", data_dir / "objects" / "orgs", data_dir / "records"):
        path.chmod(0o755)
    for path in (data_dir / "objects" / "orgs" / "file", data_dir / "records" / "trainer.db"):
        path.chmod(0o644)
    etc_mode = mode(Path("/etc/hostname"))

    make_data_dir_private(data_dir)

    for path in data_dir.rglob("*"):
        if not path.is_symlink():
            assert mode(path) & 0o077 == 0, f"{path} is {oct(mode(path))}"
    assert mode(data_dir) == 0o700
    assert mode(data_dir / "records" / "trainer.db") == 0o600
    assert mode(Path("/etc/hostname")) == etc_mode  # a symlink's target outside is not touched
    assert "tightened to owner-only" in capsys.readouterr().out
    # the second start finds nothing to do
    assert tighten_data_dir(data_dir) == 0


def test_a_directory_owned_by_someone_else_is_left_alone(tmp_path: Path) -> None:
    if os.getuid() != 0:
        pytest.skip("needs root to give the directory to another user")
    data_dir = tmp_path / "mounted"
    data_dir.mkdir(mode=0o777)
    data_dir.chmod(0o777)
    os.chown(data_dir, 12345, 12345)  # a Kubernetes emptyDir is not the pod user's
    assert tighten_data_dir(data_dir) == 0
    assert mode(data_dir) == 0o777


def test_built_models_follow_the_umask(tmp_path: Path) -> None:
    for umask, expected_dir, expected_file in ((0o022, 0o755, 0o644), (0o077, 0o700, 0o600)):
        model = tmp_path / f"model-{umask:o}"
        model.mkdir(mode=0o700)
        (model / "model.safetensors").write_bytes(b"w")
        (model / "model.safetensors").chmod(0o600)
        os.umask(umask)
        building._make_world_readable(model)  # the image build (022) and a service (077)
        assert mode(model) == expected_dir
        assert mode(model / "model.safetensors") == expected_file
