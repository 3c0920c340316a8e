"""The embedded server's private directories refuse symlinks and foreign owners."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

from shopstream.store.server import EmbeddedDatabaseError, EmbeddedPostgres, private_directory
from tests.fixtures.postgres import service_reachable_dir


def test_a_planted_symlink_is_refused_and_its_target_untouched() -> None:
    work = service_reachable_dir("shopstream-symlink-")  # the service user must reach it
    try:
        target = work / "victim"
        target.mkdir(mode=0o755)
        before = target.stat()
        home = work / "home"
        (home / "pg").mkdir(parents=True)
        (home / "pg" / "run").symlink_to(target)
        with pytest.raises(EmbeddedDatabaseError, match="not a plain directory"):
            EmbeddedPostgres(home).start()
        after = target.stat()
        assert (after.st_uid, after.st_gid, stat.S_IMODE(after.st_mode)) == (
            before.st_uid,
            before.st_gid,
            0o755,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_a_directory_of_someone_else_is_refused(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    if os.geteuid() != 0:
        pytest.skip("only root can hand a directory to another user here")
    os.chown(foreign, 65534, 65534)
    with pytest.raises(EmbeddedDatabaseError, match="belongs to uid 65534"):
        private_directory(foreign, None)


def test_a_new_directory_is_private(tmp_path: Path) -> None:
    private_directory(tmp_path / "fresh", None)
    assert stat.S_IMODE((tmp_path / "fresh").stat().st_mode) == 0o700


def test_long_homes_get_an_unpredictable_socket_directory(tmp_path: Path) -> None:
    deep = tmp_path / ("x" * 90)
    first = EmbeddedPostgres(deep)._socket_dir()
    second = EmbeddedPostgres(deep)._socket_dir()
    try:
        assert first != second
        assert first.name.startswith("shopstream-") and len(first.name) > len("shopstream-") + 6
    finally:
        first.rmdir()
        second.rmdir()
