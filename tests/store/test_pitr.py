"""Point-in-time recovery of the embedded server: a base backup, the WAL archive, and a
recovery to a moment between two batches that holds exactly the first; the runner then
loads the second file again, and only it."""

from __future__ import annotations

import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from shopstream.store.server import EmbeddedPostgres
from tests.fixtures.cli import cli_env, shopstream
from tests.fixtures.postgres import service_reachable_dir


def stored(home: Path) -> tuple[int, int, list[str]]:
    server = EmbeddedPostgres(home)
    with psycopg.connect(server.url()) as conn:
        events = conn.execute("SELECT count(*) FROM events").fetchone()
        batches = conn.execute("SELECT count(*) FROM batches").fetchone()
        files = conn.execute("SELECT path FROM ingested_files ORDER BY path").fetchall()
    assert events is not None and batches is not None
    return int(events[0]), int(batches[0]), [Path(f[0]).name for f in files]


def archived_through_now(home: Path, archive: Path) -> None:
    """Close the current WAL segment and wait until the archiver has copied it."""
    with psycopg.connect(EmbeddedPostgres(home).url(), autocommit=True) as conn:
        row = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()
    assert row is not None
    deadline = time.monotonic() + 60
    while not (archive / row[0]).exists():
        assert time.monotonic() < deadline, f"{row[0]} never reached the archive"
        time.sleep(0.2)


def test_recovery_to_a_moment_between_two_batches_holds_exactly_the_first() -> None:
    work = service_reachable_dir("shopstream-pitr-")
    try:
        archive = work / "wal"
        env = cli_env(None, work / "home", SHOPSTREAM_WAL_ARCHIVE=str(archive))
        first, second = work / "first", work / "second"
        for folder, seed in ((first, 31), (second, 32)):
            shopstream("generate", "--out", str(folder), "--events", "3000", "--seed",
                       str(seed), "--format", "canonical", "--file-rows", "3000",
                       env=env)  # fmt: skip
        shopstream("db", "up", env=env)
        shopstream("db", "migrate", env=env)
        shopstream("backup", "create", str(work / "base"), "--base", env=env)
        inbox = work / "in"
        shutil.copytree(first, inbox)
        shopstream("run", "--source", str(inbox), "--until-idle", env=env)
        time.sleep(1.0)
        between = datetime.now(UTC)
        time.sleep(1.0)
        for path in second.iterdir():
            shutil.copy(path, inbox / path.name)
        shopstream("run", "--source", str(inbox), "--until-idle", env=env)
        everything = stored(work / "home")
        assert everything[:2] == (6000, 2)
        archived_through_now(work / "home", archive)
        shopstream("db", "down", env=env)

        restored_env = cli_env(None, work / "restored", SHOPSTREAM_WAL_ARCHIVE=str(archive))
        shopstream("backup", "restore", str(work / "base"), "--until", between.isoformat(),
                   env=restored_env)  # fmt: skip
        shopstream("db", "up", env=restored_env)
        events, batches, files = stored(work / "restored")
        assert (events, batches) == (3000, 1)
        assert files == [p.name for p in first.iterdir()]

        # The runner sees the second file as new, and the first as loaded.
        shopstream("run", "--source", str(inbox), "--until-idle", env=restored_env)
        assert stored(work / "restored") == everything
        shopstream("db", "down", env=restored_env)
    finally:
        for home in (work / "home", work / "restored"):
            if (home / "pg" / "data").exists():
                EmbeddedPostgres(home).stop()
        shutil.rmtree(work, ignore_errors=True)
