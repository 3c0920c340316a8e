"""The loader against a real PostgreSQL: the primary key, not a hint, decides what is new."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import polars as pl
import psycopg
import pytest
from psycopg import sql

from shopstream.contract import ParsedBatch
from shopstream.store import loader as loader_module
from shopstream.store.commit_order import CommitOrder, CommitTurn
from shopstream.store.connection import connect
from shopstream.store.loader import BatchResult, Loader, LoadPlan, LoadStatus
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
    loaded = loader.load(first).result
    assert loaded is not None and loaded.rows_loaded == 3

    # The look-ahead claims nothing is stored, but ids[1] and ids[2] are: the COPY hits the
    # primary key, the transaction rolls back whole and the batch is loaded again properly.
    second = views_batch(ids[1:], "/in/b.csv")
    stale = LoadPlan(stored_ids=pl.Series("event_id", [], dtype=pl.String))
    outcome = loader.load(second, stale)
    loader.close()
    result = outcome.result
    assert result is not None
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


def _load_in_turns(
    database_url: str, earlier: ParsedBatch, later: ParsedBatch, later_plan: LoadPlan
) -> tuple[BatchResult, BatchResult]:
    """Load ``later`` first, on its own connection: it writes its rows and waits for its
    turn while ``earlier`` loads. Both must commit, ``earlier`` first."""
    with connect(database_url) as conn:
        migrate(conn)
    order = CommitOrder()
    earlier_turn, later_turn = order.turn(), order.turn()
    first_loader = Loader(database_url)
    second_loader = first_loader.with_own_connection()
    results: dict[str, BatchResult] = {}

    def load_one(
        loader: Loader, batch: ParsedBatch, plan: LoadPlan, turn: CommitTurn
    ) -> BatchResult:
        result = loader.load(batch, plan, turn).result
        assert result is not None
        return result

    def load(
        name: str, loader: Loader, batch: ParsedBatch, plan: LoadPlan, turn: CommitTurn
    ) -> threading.Thread:
        thread = threading.Thread(
            target=lambda: results.setdefault(name, load_one(loader, batch, plan, turn)),
            daemon=True,
        )
        thread.start()
        return thread

    loading_later = load("later", second_loader, later, later_plan, later_turn)
    loading_later.join(timeout=2)
    assert loading_later.is_alive()  # its rows are written; it waits for its turn
    loading_earlier = load("earlier", first_loader, earlier, LoadPlan(), earlier_turn)
    for thread in (loading_earlier, loading_later):
        thread.join(timeout=30)
        assert not thread.is_alive(), "the two transactions wait for each other"
    first_loader.close()
    second_loader.close()
    with psycopg.connect(database_url) as conn:
        committed = conn.execute("SELECT batch_id FROM batches ORDER BY committed_at")
        assert [batch_id for (batch_id,) in committed] == [
            results["earlier"].batch_id,
            results["later"].batch_id,
        ]
        stored = conn.execute("SELECT count(*), count(DISTINCT event_id) FROM events").fetchone()
        assert stored == (6, 6)
    return results["earlier"], results["later"]


def test_two_connections_write_side_by_side_and_commit_in_order(database_url: str) -> None:
    """The later batch never writes an id the earlier one holds: they count as its
    duplicates, since the earlier batch commits first (or the later one gives up too)."""
    ids = uuids(100, 6)
    earlier = views_batch(ids[:4], "/in/a.csv")
    later = views_batch(ids[2:], "/in/b.csv")  # ids[2:4] are the earlier batch's too
    # No stored-id hint: the loader looks up itself.
    plan = LoadPlan(in_flight_ids=earlier.events["event_id"])
    first, second = _load_in_turns(database_url, earlier, later, plan)
    assert (first.rows_loaded, first.duplicates_in_store) == (4, 0)
    assert (second.rows_loaded, second.duplicates_in_store) == (2, 2)


def test_a_later_batch_holding_a_lock_the_earlier_needs_steps_back(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Should the later batch hold a row the earlier one must write (here: a hint that
    forgot the batch in flight), its wait runs out, it rolls back and writes again after."""
    monkeypatch.setattr(loader_module, "_TURN_WAIT_SECONDS", 1.0)
    ids = uuids(300, 6)
    earlier = views_batch(ids[:4], "/in/a.csv")
    later = views_batch(ids[2:], "/in/b.csv")
    plan = LoadPlan(stored_ids=pl.Series("event_id", [], dtype=pl.String))
    first, second = _load_in_turns(database_url, earlier, later, plan)
    assert (first.rows_loaded, second.rows_loaded, second.duplicates_in_store) == (4, 2, 2)
    assert second.conflicted  # its second try met the earlier batch's ids in the store


def test_a_batch_after_a_failed_one_rolls_back_whole(database_url: str) -> None:
    with connect(database_url) as conn:
        migrate(conn)
    order = CommitOrder()
    _, later_turn = order.turn(), order.turn()
    later = views_batch(uuids(200, 3), "/in/c.csv")
    loader = Loader(database_url)
    outcomes: list[LoadStatus] = []

    def load_later() -> None:
        outcomes.append(loader.load(later, turn=later_turn).status)

    loading_later = threading.Thread(target=load_later)
    loading_later.start()
    loading_later.join(timeout=2)
    order.break_off()  # the earlier batch failed
    loading_later.join(timeout=30)
    loader.close()
    assert outcomes == [LoadStatus.ABANDONED]
    with psycopg.connect(database_url) as conn:
        for table in ("events", "ingested_files", "batches"):
            count = conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
            ).fetchone()
            assert count == (0,), table
