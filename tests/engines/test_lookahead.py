"""The duplicate look-ahead: asks the store only about ids it remembers, and a miss costs a
reload, never an event (against a real PostgreSQL)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import polars as pl
import psycopg

from shopstream.engines.embedded.lookahead import LookAhead, RecentIds
from shopstream.store.connection import RetryBudget, connect
from shopstream.store.loader import Loader
from shopstream.store.migrate import migrate
from shopstream.store.stored_ids import AheadConnection
from tests.fixtures.batches import uuids, views_batch, views_file
from tests.fixtures.cli import cli_env, shopstream
from tests.fixtures.counts import outcome


def _series(ids: list[str]) -> pl.Series:
    return pl.Series("event_id", ids, dtype=pl.String)


def test_recent_ids_forget_the_oldest_generation_beyond_their_capacity() -> None:
    recent = RecentIds(capacity=4)
    for start in (0, 2, 4):
        recent.add(_series(uuids(start, 2)))
    assert sorted(recent.seen(_series(uuids(0, 8))).to_list()) == uuids(2, 4)
    assert RecentIds(capacity=0).seen(_series(uuids(0, 2))).is_empty()


def test_the_look_ahead_asks_about_every_id_until_input_stops_overlapping_the_store(
    database_url: str,
) -> None:
    with connect(database_url) as conn:
        migrate(conn)
    loader = Loader(database_url)
    loader.load(
        views_batch(uuids(0, 4), "/in/old.csv")
    )  # stored by an earlier run: this look-ahead never saw these ids
    ahead = AheadConnection(
        database_url, budget=RetryBudget(max_delay=1), should_stop=lambda: False
    )
    look = LookAhead(ahead.stored_ids, memory_ids=1000)

    assert look.mode == "ask_all"
    assert look.duplicates(_series(uuids(3, 3))).to_list() == uuids(3, 1)
    assert look.mode == "ask_all"  # the store held an id the memory did not
    assert look.duplicates(_series(uuids(10, 3))).is_empty()
    assert look.mode == "ask_remembered"

    # A batch handed over is a duplicate source before it commits, and remembered after.
    fresh = uuids(20, 3)
    look.handed_over(_series(fresh))
    assert look.duplicates(_series([fresh[0], *uuids(30, 1)])).to_list() == [fresh[0]]
    loader.load(views_batch(fresh, "/in/new.csv"))
    look.settled(committed=True)
    assert look.duplicates(_series([fresh[1], *uuids(30, 1)])).to_list() == [fresh[1]]

    # Remembering only what it committed, it misses the old ids now; the loader's
    # primary key catches them and the report of that conflict turns full lookups back on.
    assert look.duplicates(_series(uuids(0, 2))).is_empty()
    look.handed_over(_series(uuids(0, 2)))
    look.settled(committed=True, conflicted=True)
    assert look.mode == "ask_all"
    assert look.duplicates(_series(uuids(0, 2))).to_list() == uuids(0, 2)
    ahead.close()
    loader.close()


def test_a_runner_that_does_not_remember_stored_ids_still_counts_them_as_duplicates(
    tmp_path: Path, database_url: str
) -> None:
    env = cli_env(database_url, tmp_path / "home", SHOPSTREAM_MAX_BATCH_ROWS="3")
    earlier, later = tmp_path / "earlier", tmp_path / "later"
    earlier.mkdir()
    later.mkdir()
    (earlier / "events_1_0.csv").write_bytes(views_file(uuids(0, 3)))
    shopstream("run", "--source", str(earlier), "--until-idle", env=env)

    # The second runner first sees new ids (so it stops asking about every id), then a
    # file of ids the first runner stored: its COPY hits the primary key and reloads.
    files = {
        "events_2_0.csv": uuids(10, 3),
        "events_2_1.csv": uuids(20, 3),
        "events_2_2.csv": [*uuids(0, 2), *uuids(30, 1)],
    }
    for order, (name, ids) in enumerate(files.items()):
        (later / name).write_bytes(views_file(ids))
        os.utime(later / name, (1_700_000_000 + order, 1_700_000_000 + order))
    logged = {**env, "SHOPSTREAM_LOG_LEVEL": "INFO", "SHOPSTREAM_LOG_FORMAT": "json"}
    second = shopstream("run", "--source", str(later), "--until-idle", env=logged)
    records = [json.loads(line) for line in second.stderr.splitlines() if line.startswith("{")]
    missed = [r for r in records if "look-ahead missed" in r["event"]]
    assert len(missed) == 1

    final = outcome(database_url)
    assert (final.events, final.distinct_ids, final.read) == (10, 10, 12)
    assert (final.loaded, final.duplicates) == (10, 2)
    with psycopg.connect(database_url) as conn:
        last = conn.execute(
            "SELECT batch_id, rows_loaded, duplicates_in_store FROM batches"
            " ORDER BY batch_id DESC LIMIT 1"
        ).fetchone()
    # The loader's line about the reload names the batch it committed as (reserved ahead).
    assert last == (missed[0]["batch_id"], 1, 2)
