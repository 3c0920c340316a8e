"""Helpers shared by the benchmark scripts: a database to measure in, the CLI's env."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg

from shopstream.store.server import EmbeddedPostgres

SHOPSTREAM = [sys.executable, "-m", "shopstream"]


@contextlib.contextmanager
def workspace(prefix: str) -> Iterator[tuple[Path, str]]:
    """A scratch directory the PostgreSQL service user can reach, and a server URL:
    ``SHOPSTREAM_DATABASE_URL`` when set, otherwise a private server started here."""
    work = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    work.chmod(0o755)
    server = None
    base_url = os.environ.get("SHOPSTREAM_DATABASE_URL")
    if base_url is None:
        server = EmbeddedPostgres(work / "pg-home")
        server.start()
        base_url = server.url()
    try:
        yield work, base_url
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)


def fresh_database(base_url: str, name: str) -> str:
    root = base_url.rsplit("/", 1)[0]
    with psycopg.connect(f"{root}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    return f"{root}/{name}"


def env_for(url: str, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOPSTREAM_")}
    return {**env, "SHOPSTREAM_DATABASE_URL": url, "SHOPSTREAM_HOME": str(home)}


def committed_window(url: str) -> tuple[int, float]:
    """Rows read, and seconds from the first batch's start to the last commit."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            """SELECT sum(rows_read),
                      extract(epoch FROM max(committed_at) - min(started_at))
                 FROM batches"""
        ).fetchone()
    assert row is not None
    return int(row[0]), float(row[1])


def landing_to_commit(
    url: str, work: Path, *, rate: float, seconds: float, extra: tuple[str, ...] = ()
) -> list[float]:
    """Live traffic at ``rate`` for ``seconds`` into a running ``shopstream run``: for every
    row, the seconds from its file landing to its batch committing, sorted."""
    import subprocess
    import time

    inbox = work / "live"
    inbox.mkdir()
    env = env_for(url, work / "home")
    subprocess.run([*SHOPSTREAM, "db", "migrate"], env=env, check=True, capture_output=True)
    runner = subprocess.Popen(
        [*SHOPSTREAM, "run", "--source", str(inbox)], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(2)
    subprocess.run(
        [*SHOPSTREAM, "generate", "--out", str(inbox), "--rate", str(rate),
         "--duration", str(seconds), "--interval", "0.1", *extra],
        env=env, check=True, capture_output=True,
    )  # fmt: skip
    time.sleep(3)
    runner.terminate()
    runner.wait(timeout=60)
    landed = {str(p): p.stat().st_mtime for p in inbox.iterdir()}
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            """SELECT f.path, f.rows_read, extract(epoch FROM b.committed_at)
                 FROM ingested_files f JOIN batches b USING (batch_id)"""
        ).fetchall()
    waits: list[float] = []
    for path, count, committed in rows:
        waits.extend([float(committed) - landed[path]] * int(count))
    return sorted(waits)
