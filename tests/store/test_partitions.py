"""``events`` by month (migration 0026): stored events move into monthly partitions with
their keys, the key stays unique across months, and retention's month drop takes a
month's events, keys and fraud rows together."""

from __future__ import annotations

import uuid
from datetime import date
from pathlib import Path

import psycopg
import pytest

from shopstream.store.loader import Loader
from shopstream.store.migrate import available_migrations, migrate
from shopstream.store.partitions import EventMonths, drop_event_month
from shopstream.store.queries import totals
from tests.fixtures.batches import uuids, views_batch
from tests.fixtures.cli import cli_env, shopstream
from tests.fixtures.history import event_partitions

BEFORE_PARTITIONS = 25
TIMES = ("2026-01-31 23:59:59+00", "2026-02-01 00:00:00+00", "2026-02-14 12:00:00+00",
         "2026-04-30 23:00:00-02")  # fmt: skip


def test_stored_events_move_into_monthly_partitions_with_their_keys(database_url: str) -> None:
    ids = [str(uuid.uuid4()) for _ in TIMES]
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for migration in available_migrations():
            if migration.version <= BEFORE_PARTITIONS:
                conn.execute(migration.sql.encode())
                conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                    (migration.version, migration.name),
                )
        for event_id, at in zip(ids, TIMES, strict=True):
            conn.execute(
                "INSERT INTO events (event_id, event_type, user_id, event_timestamp, batch_id)"
                " VALUES (%s, 'purchase', 'u1', %s, 1)",
                (event_id, at),
            )
        conn.execute(
            "INSERT INTO fraud_activity (event_id, event_type, event_timestamp, user_id,"
            " order_key, batch_id) VALUES (%s, 'purchase', %s, 'u1', 'o1', 1)",
            (ids[0], TIMES[0]),
        )
        conn.commit()

        migrate(conn)

        assert event_partitions(conn) == ["events_2026_01", "events_2026_02", "events_2026_05"]
        held = conn.execute(
            "SELECT event_id::text, event_month FROM event_ids ORDER BY event_month, event_id"
        ).fetchall()
        assert sorted(held) == sorted(
            zip(ids, [date(2026, 1, 1), date(2026, 2, 1), date(2026, 2, 1), date(2026, 5, 1)],
                strict=True)
        )  # fmt: skip
        assert conn.execute("SELECT count(*) FROM events").fetchone() == (4,)
        assert totals(conn).event_months == 3

        # A key is unique across months: the same id in another month is refused.
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("INSERT INTO event_ids VALUES (%s, '2026-05-01')", (ids[0],))
        conn.rollback()

        # A row for a month with no partition is refused until the month is made.
        months = EventMonths()
        with pytest.raises(psycopg.errors.CheckViolation) as refused:
            conn.execute(
                "INSERT INTO events (event_id, event_type, user_id, event_timestamp, batch_id)"
                " VALUES (gen_random_uuid(), 'view', 'u2', '2027-03-03', 2)"
            )
        assert refused.value.diag.table_name == "events"
        conn.rollback()
        months.ensure(conn, [date(2027, 3, 1), date(2026, 1, 1)])
        assert "events_2027_03" in event_partitions(conn)

        # Dropping January takes its event, its key and its fraud row; February stays.
        with conn.transaction():
            assert drop_event_month(conn, date(2026, 1, 1)) == 1
        assert drop_event_month(conn, date(2026, 1, 1)) == 0
        assert "events_2026_01" not in event_partitions(conn)
        assert conn.execute("SELECT count(*) FROM event_ids").fetchone() == (3,)
        assert conn.execute("SELECT count(*) FROM fraud_activity").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM events").fetchone() == (3,)


def test_an_id_resent_with_another_month_is_a_duplicate(tmp_path: Path, database_url: str) -> None:
    """The key is global: the same event id sent again with a timestamp in another month
    (another partition) is counted as a duplicate in the store, not loaded twice."""
    env = cli_env(database_url, tmp_path / "home")
    event_id = str(uuid.uuid4())
    header = "event_id,event_type,product_id,user_id,event_timestamp\n"
    for n, at in enumerate(("2026-01-15T10:00:00Z", "2026-03-15T10:00:00Z")):
        inbox = tmp_path / f"in{n}"
        inbox.mkdir()
        (inbox / "e.csv").write_text(f"{header}{event_id},page_view,,u1,{at}\n")
        shopstream("run", "--source", str(inbox), "--until-idle", env=env)
    with psycopg.connect(database_url) as conn:
        stored = conn.execute(
            "SELECT tableoid::regclass::text FROM events WHERE event_id = %s", (event_id,)
        ).fetchall()
        counts = conn.execute(
            "SELECT sum(rows_loaded), sum(duplicates_in_store) FROM batches"
        ).fetchone()
    assert stored == [("events_2026_01",)] and counts == (1, 1)


def test_a_loader_makes_again_a_month_retention_dropped_under_it(database_url: str) -> None:
    """The loader remembers the months it made; when retention drops one under it, the
    COPY meets no partition, and the loader makes it again instead of failing the batch."""
    with psycopg.connect(database_url) as conn:
        migrate(conn)
    ids = uuids(0, 4)
    loader = Loader(database_url)
    try:
        first = loader.load(views_batch(ids[:2], "/in/a.csv")).result
        with psycopg.connect(database_url) as conn, conn.transaction():
            assert drop_event_month(conn, date(2026, 1, 1)) == 2
        second = loader.load(views_batch(ids[2:], "/in/b.csv")).result
    finally:
        loader.close()
    assert first is not None and second is not None and second.rows_loaded == 2
    with psycopg.connect(database_url) as conn:
        assert "events_2026_01" in event_partitions(conn)
        assert conn.execute("SELECT count(*) FROM event_ids").fetchone() == (2,)
