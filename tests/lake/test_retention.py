"""Retention on 60 days of history with a 30-day policy: what leaves PostgreSQL is in the
lake first, and nothing leaves when the archive cannot be shown complete."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from deltalake import DeltaTable

from shopstream.store.rebuild import DERIVED_TABLES
from tests.fixtures.api import free_port
from tests.fixtures.cli import cli_env, shopstream
from tests.fixtures.history import event_partitions
from tests.fixtures.snapshots import snapshot
from tests.lake.test_export import load

POLICY = {
    "SHOPSTREAM_RETENTION_EVENTS_DAYS": "30",
    "SHOPSTREAM_RETENTION_QUARANTINE_RAW_DAYS": "30",
    "SHOPSTREAM_JOB_RETRIES": "0",
}


def derived_tables(url: str) -> dict[str, list[tuple[object, ...]]]:
    return {k: v for k, v in snapshot(url).items() if k in DERIVED_TABLES}


def state(url: str, cutoff: datetime) -> tuple[int, int, int, int]:
    """Events in all, events before the cut-off, quarantined records still holding raw
    content before it (by event time of the batch), and quarantine rows in all."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            """SELECT (SELECT count(*) FROM events),
                      (SELECT count(*) FROM events WHERE event_timestamp < %s),
                      (SELECT count(*) FROM quarantine WHERE raw <> '' OR raw_bytes IS NOT NULL),
                      (SELECT count(*) FROM quarantine)""",
            (cutoff,),
        ).fetchone()
    assert row is not None
    return row  # type: ignore[return-value]


def test_retention_archives_verifies_then_deletes_and_refuses_without_archive(
    tmp_path: Path, database_url: str
) -> None:
    # History loaded before the policy was set (with it, events past the horizon are
    # quarantined on arrival: see the end).
    load(cli_env(database_url, tmp_path / "home"), tmp_path / "in", events=18_000, days=60, seed=7)
    env = cli_env(database_url, tmp_path / "home", **POLICY)
    today = datetime.combine(datetime.now(UTC).date(), datetime.min.time(), UTC)
    cutoff = today - timedelta(days=30)
    with psycopg.connect(database_url) as conn:
        # Records are quarantined when they arrive: half of them, 40 days ago.
        aged = conn.execute(
            """UPDATE quarantine SET created_at = created_at - interval '40 days'
                WHERE quarantine_id % 2 = 0"""
        ).rowcount
        old_ids = {
            str(r[0])
            for r in conn.execute(
                "SELECT event_id FROM events WHERE event_timestamp < %s", (cutoff,)
            )
        }
    before = state(database_url, cutoff)
    assert before[1] > 5_000 and aged > 0
    derived = derived_tables(database_url)

    # Events a rebuild has not folded yet (a backfill stopped before it) do not leave.
    deferred = "SELECT min(batch_id) FROM batches"
    with psycopg.connect(database_url) as conn:
        conn.execute(f"UPDATE batches SET derived_pending = true WHERE batch_id = ({deferred})")
    unfolded = shopstream("retention", "apply", env=env, check=False)
    assert unfolded.returncode == 1 and "no rebuild has folded" in " ".join(
        (unfolded.stdout + unfolded.stderr).split()
    )
    assert state(database_url, cutoff) == before
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE batches SET derived_pending = false")

    # The lake is unreachable: the export fails, so nothing is deleted.
    unreachable = env | {
        "SHOPSTREAM_LAKE_URI": "s3://nowhere/lake",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "y",
        "AWS_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    failed = shopstream("retention", "apply", env=unreachable, check=False)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert state(database_url, cutoff) == before

    # The ledger claims a lake that holds nothing: verification refuses.
    hollow = str(tmp_path / "hollow-lake")
    with psycopg.connect(database_url) as conn:
        conn.execute(
            """INSERT INTO lake_exports (lake_uri, lake_table, batch_id, export_id, rows, status)
               SELECT %s || '/' || t, t, batch_id, 1, 0, 'committed'
                 FROM batches, unnest(array['events', 'quarantine']) AS t""",
            (hollow,),
        )
    refused = shopstream(
        "retention", "apply", env=env | {"SHOPSTREAM_LAKE_URI": hollow}, check=False
    )
    assert refused.returncode == 1
    assert "nothing deleted" in " ".join(refused.stdout.split())
    assert state(database_url, cutoff) == before

    dry = shopstream("retention", "apply", "--dry-run", env=env)
    assert f"events: {before[1]:,} rows would leave" in dry.stdout
    assert state(database_url, cutoff) == before

    shopstream("retention", "apply", env=env)
    after = state(database_url, cutoff)
    assert after[0] == before[0] - before[1] and after[1] == 0
    assert after[3] == before[3] and after[2] == before[2] - aged
    lake = DeltaTable(str(tmp_path / "home" / "lake" / "events"))
    held = lake.to_pyarrow_table(columns=["event_id"], filters=[("event_date", "<", cutoff.date())])
    assert set(held.column("event_id").to_pylist()) == old_ids
    with psycopg.connect(database_url) as conn:
        cleared = conn.execute(
            """SELECT count(*), count(*) FILTER (WHERE raw_sha256 IS NOT NULL AND raw_size > 0)
                 FROM quarantine WHERE created_at < %s""",
            (cutoff,),
        ).fetchone()
    assert cleared is not None and cleared[0] == cleared[1]
    # The month before the cut-off's left whole, by dropping its partition, with the keys
    # of every deleted event; the cut-off's own month keeps its partition.
    with psycopg.connect(database_url) as conn:
        partitions = event_partitions(conn)
        keys = conn.execute(
            "SELECT count(*) FROM event_ids WHERE event_id = ANY(%s::uuid[])", (list(old_ids),)
        ).fetchone()
    whole_month = (cutoff.date().replace(day=1) - timedelta(days=1)).replace(day=1)
    assert f"events_{whole_month:%Y_%m}" not in partitions
    assert f"events_{cutoff:%Y_%m}" in partitions and keys == (0,)

    # The rebuild folds the days that left from the lake: nothing derived is lost.
    shopstream("rebuild", env=env)
    assert derived_tables(database_url) == derived
    # So does a range rebuild across the horizon: its customers' history is in both places.
    first, last = (cutoff - timedelta(days=2)).date(), (cutoff + timedelta(days=1)).date()
    with psycopg.connect(database_url) as conn:
        days = (first, last)
        conn.execute("UPDATE product_analytics SET views = 0 WHERE day BETWEEN %s AND %s", days)
        conn.execute("DELETE FROM user_sessions WHERE session_start::date BETWEEN %s AND %s", days)
    shopstream("rebuild", "--from", str(first), "--to", str(last), env=env)
    assert derived_tables(database_url) == derived

    # An event re-sent from before the horizon can no longer be told from a duplicate (its
    # first copy left PostgreSQL): it is quarantined, not loaded a second time.
    resent = tmp_path / "resent"
    resent.mkdir()
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            """SELECT to_char(event_timestamp AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
                 FROM events ORDER BY event_timestamp LIMIT 1"""
        ).fetchone()
    assert row is not None
    old_id = sorted(old_ids)[0]
    (resent / "late.csv").write_text(
        "event_id,event_type,product_id,user_id,event_timestamp\n"
        f"{old_id},page_view,,u1,{cutoff - timedelta(days=3):%Y-%m-%dT%H:%M:%SZ}\n"
        f"{uuid.uuid4()},page_view,,u1,{row[0]}\n"
    )
    shopstream("run", "--source", str(resent), "--until-idle", env=env)
    with psycopg.connect(database_url) as conn:
        loaded = conn.execute(
            "SELECT count(*) FROM events WHERE event_id = %s", (old_id,)
        ).fetchone()
        rules = conn.execute(
            "SELECT rules FROM quarantine WHERE source LIKE %s", ("%late.csv",)
        ).fetchall()
    assert loaded == (0,) and rules == [(["timestamp_within_retention"],)]
