"""The loader against a real PostgreSQL: the primary key, not a hint, decides what is new."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import psycopg

from shopstream.store.connection import connect
from shopstream.store.loader import Loader
from shopstream.store.migrate import migrate
from tests.fixtures.batches import uuids, views_batch
from tests.fixtures.cli import cli_env, shopstream, start_shopstream
from tests.fixtures.counts import outcome


def test_a_stale_hint_falls_back_to_the_primary_key(database_url: str) -> None:
    with connect(database_url) as conn:
        migrate(conn)
    ids = uuids(0, 6)
    loader = Loader(database_url)
    first = views_batch(ids[:3], "/in/a.csv")
    assert loader.load(first).rows_loaded == 3

    # The look-ahead claims nothing is stored, but ids[1] and ids[2] are: the COPY hits the
    # primary key, the transaction rolls back whole and the batch is loaded again properly.
    second = views_batch(ids[1:], "/in/b.csv")
    second.stored_ids_hint = pl.Series("event_id", [], dtype=pl.String)
    result = loader.load(second)
    loader.close()
    assert (result.rows_loaded, result.duplicates_in_store) == (3, 2)
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone() == (6,)
        assert conn.execute("SELECT sum(rows_loaded) FROM batches").fetchone() == (6,)


def test_concurrent_runners_over_overlapping_input_store_each_event_once(
    tmp_path: Path, database_url: str
) -> None:
    env = cli_env(database_url, tmp_path / "home")
    shopstream(
        "generate", "--out", str(tmp_path / "a"), "--events", "60000", "--seed", "3",
        "--duplicates", "0.02", "--file-rows", "3000", env=env,
    )  # fmt: skip
    shutil.copytree(tmp_path / "a", tmp_path / "b")  # same events, other paths
    shopstream("db", "migrate", env=env)
    runners = [
        start_shopstream("run", "--source", str(tmp_path / d), "--until-idle", env=env)
        for d in ("a", "b")
    ]
    for runner in runners:
        _, stderr = runner.communicate(timeout=300)
        assert runner.returncode == 0, stderr
    final = outcome(database_url)
    assert final.events == final.distinct_ids == final.loaded
    assert final.read == final.loaded + final.duplicates + final.quarantined
    assert final.read == 2 * 61200  # 60,000 events plus 2 % re-sent, in both directories
    assert final.loaded == 60000
