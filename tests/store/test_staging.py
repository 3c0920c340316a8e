"""Merging rows that workers staged themselves (the Spark engine's path), against a real
PostgreSQL: the first row of each id goes in once, whatever the store and other writers
hold."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime

import polars as pl
import psycopg
import pytest

from shopstream.contract import ParsedBatch, StagedRows, empty_quarantine
from shopstream.parse.normalize import EVENT_SCHEMA
from shopstream.store.connection import connect
from shopstream.store.loader import Loader, LoadOutcome
from shopstream.store.migrate import migrate
from shopstream.store.staging import STAGING_SCHEMA, stage_partition
from tests.fixtures.batches import uuids, views_batch


def _stage(database_url: str, prefix: str, parts: list[list[str]]) -> StagedRows:
    """Each list of ids staged as one worker's partition, as views read from one file."""
    staged = []
    with connect(database_url) as conn:
        for part, ids in enumerate(parts):
            name = f"/in/part{part}.csv"
            events = views_batch(ids, name).events.with_columns(
                pl.lit(name).alias("source"),
                pl.int_range(2, len(ids) + 2, dtype=pl.Int64).alias("line_no"),
            )
            staged.append(stage_partition(conn, prefix, part, events, pl.DataFrame()))
    return StagedRows(prefix, tuple(staged))


def _staged_batch(staged: StagedRows) -> ParsedBatch:
    return ParsedBatch(
        engine="spark",
        source="/in",
        started_at=datetime.now(UTC),
        events=pl.DataFrame(schema=EVENT_SCHEMA),
        quarantine=empty_quarantine(),
        files=[],
        rows_read=staged.events,
        duplicates_in_batch=0,
        source_batch_key="test:staged:0",
        staged=staged,
    )


@pytest.mark.parametrize("rollups", [True, False], ids=["rows read back", "counts only"])
def test_a_key_a_concurrent_writer_commits_mid_merge_is_a_duplicate(
    database_url: str, caplog: pytest.LogCaptureFixture, rollups: bool
) -> None:
    """The merge inserts keys without ON CONFLICT: a key another writer holds makes it
    wait, and once that writer commits, the loader runs the commit again and counts the
    id as stored, with nothing lost or doubled (whether or not the inserted rows are read
    back for rollups)."""
    caplog.set_level(logging.INFO, logger="shopstream.store.loader")
    with connect(database_url) as conn:
        migrate(conn)
    ids = uuids(0, 6)
    loader = Loader(database_url, rollups=rollups)
    try:
        assert loader.load(views_batch(ids[:1], "/in/a.csv")).result is not None
        # Two workers' partitions: ids[0] is stored, ids[3] is in both, ids[5] is about to
        # be committed by another writer.
        staged = _stage(database_url, "stest_0_", [ids[:4], ids[3:]])
        with psycopg.connect(database_url) as other:
            other.execute("INSERT INTO event_ids VALUES (%s, '2026-01-01')", (ids[5],))
            other.execute(
                "INSERT INTO events SELECT (jsonb_populate_record(e, jsonb_build_object("
                "'event_id', %s::text))).* FROM events e WHERE event_id = %s",
                (ids[5], ids[0]),
            )
            outcomes: list[LoadOutcome] = []
            merging = threading.Thread(
                target=lambda: outcomes.append(loader.load(_staged_batch(staged)))
            )
            merging.start()
            time.sleep(1.0)
            assert merging.is_alive(), "the merge should wait for the other writer's key"
            other.commit()
            merging.join(timeout=60)
    finally:
        loader.close()
    assert "reloading it" in caplog.text  # the commit ran again after 23505
    result = outcomes[0].result
    assert result is not None
    assert (result.rows_loaded, result.duplicates_in_batch, result.duplicates_in_store) == (
        4,
        1,
        2,
    )
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*), count(DISTINCT event_id) FROM events").fetchone() == (
            6,
            6,
        )
        assert conn.execute("SELECT count(*) FROM event_ids").fetchone() == (6,)
        assert conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = %s", (STAGING_SCHEMA,)
        ).fetchone() == (0,)


def test_a_staged_batch_the_store_already_holds_loads_nothing_and_counts_every_row(
    database_url: str,
) -> None:
    """With rollups on the merge reads its inserted rows back; when none goes in, it still
    says how many distinct ids the batch held, so the accounting stays exact."""
    with connect(database_url) as conn:
        migrate(conn)
    ids = uuids(0, 3)
    loader = Loader(database_url, rollups=True)
    try:
        assert loader.load(views_batch(ids, "/in/a.csv")).result is not None
        staged = _stage(database_url, "stest_1_", [ids, ids[:1]])
        result = loader.load(_staged_batch(staged)).result
    finally:
        loader.close()
    assert result is not None
    assert (result.rows_loaded, result.duplicates_in_batch, result.duplicates_in_store) == (
        0,
        1,
        3,
    )
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT sum(events) FROM realtime_metrics").fetchone() == (3,)
