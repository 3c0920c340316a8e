"""Backfill: history shuffled across files loads with rollups deferred, then one rebuild;
the result equals a streaming load table by table, also after kill -9 during the load and
during the rebuild."""

from __future__ import annotations

import random
import shutil
import time
from pathlib import Path

import psycopg

from shopstream.store.server import EmbeddedPostgres
from tests.fixtures.cli import Background, cli_env, kill_9_at_random, shopstream
from tests.fixtures.postgres import fresh_database
from tests.fixtures.snapshots import snapshot


def shuffled_history(work: Path) -> Path:
    """Two weeks of events whose every file holds moments from the whole fortnight."""
    ordered = work / "ordered"
    shopstream("generate", "--out", str(ordered), "--events", "24000", "--days", "14",
               "--seed", "41", "--format", "canonical", "--dirty", "0.02", "--duplicates",
               "0.02", "--file-rows", "24000", env=cli_env(None, work / "gen"))  # fmt: skip
    header, *lines = b"".join(p.read_bytes() for p in sorted(ordered.glob("*.csv"))).splitlines(
        keepends=True
    )
    rows = [line for line in lines if line != header]
    random.Random(41).shuffle(rows)
    inbox = work / "history"
    inbox.mkdir()
    for n, offset in enumerate(range(0, len(rows), 2_000)):
        (inbox / f"history_{n:03d}.csv").write_bytes(
            header + b"".join(rows[offset : offset + 2_000])
        )
    return inbox


def waiting_on_lock(url: str, pattern: str) -> None:
    deadline = time.monotonic() + 120
    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            row = conn.execute(
                """SELECT count(*) FROM pg_stat_activity
                    WHERE wait_event_type = 'Lock' AND query LIKE %s""",
                (pattern,),
            ).fetchone()
            if row and row[0]:
                return
            assert time.monotonic() < deadline, f"nothing like {pattern!r} ever waited"
            time.sleep(0.1)


def pending(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM batches WHERE derived_pending").fetchone()
    return int(row[0]) if row else -1


def test_backfill_equals_streaming_even_when_killed_in_either_phase(
    tmp_path: Path, pg_server: EmbeddedPostgres
) -> None:
    history = shuffled_history(tmp_path)
    files = sorted(history.iterdir())
    inbox = tmp_path / "in"
    inbox.mkdir()
    for path in files[: len(files) // 2]:
        shutil.copy(path, inbox / path.name)
    backfilled = fresh_database(pg_server, "backfilled")
    env = cli_env(backfilled, tmp_path / "home", SHOPSTREAM_MAX_BATCH_ROWS="2000")
    # Killed during the load phase, at random moments.
    kill_9_at_random(("backfill", "--source", str(inbox)), env, seed=4, low=1.0, high=4.0)

    # More history arrives; this backfill loads it, then dies in its rebuild of the days
    # that history covers. The rebuild has emptied and refolded the range's rollups and
    # dropped its customers' sessions when it first writes the funnels, which the blocker
    # holds: killed there, mid-transaction.
    for path in files[len(files) // 2 :]:
        shutil.copy(path, inbox / path.name)
    with psycopg.connect(backfilled) as blocker:
        blocker.execute("LOCK TABLE funnel_sessions IN SHARE MODE")
        process = Background(("backfill", "--source", str(inbox)), env)
        waiting_on_lock(backfilled, "%funnel_sessions%")
        process.kill()
        process.communicate(timeout=30)
    assert pending(backfilled) > 0

    done = shopstream("backfill", "--source", str(inbox), env=env)
    assert "deferred batches folded" in done.stdout
    assert pending(backfilled) == 0
    again = shopstream("backfill", "--source", str(inbox), env=env)
    assert "nothing deferred" in again.stdout

    streamed = fresh_database(pg_server, "streamed")
    stream_env = cli_env(streamed, tmp_path / "stream-home", SHOPSTREAM_MAX_BATCH_ROWS="2000")
    shopstream("run", "--source", str(inbox), "--until-idle", env=stream_env)
    assert pending(streamed) == 0
    assert snapshot(backfilled) == snapshot(streamed)


def test_backfill_into_a_longer_history_rebuilds_only_the_days_it_covers(
    tmp_path: Path, pg_server: EmbeddedPostgres
) -> None:
    """Four streamed days, then a backfill of half a day among them (the same customers):
    the rebuild covers that day and its customers only, and every table equals a streaming
    load of both."""
    gen = cli_env(None, tmp_path / "gen")
    live, history = tmp_path / "live", tmp_path / "history"
    shopstream("generate", "--out", str(live), "--events", "6000", "--days", "4", "--seed",
               "43", "--start", "2026-03-01T00:00", "--format", "canonical", env=gen)  # fmt: skip
    shopstream("generate", "--out", str(history), "--events", "1500", "--days", "0.5", "--seed",
               "44", "--start", "2026-03-02T06:00", "--format", "canonical", env=gen)  # fmt: skip
    backfilled = fresh_database(pg_server, "backfilled_range")
    env = cli_env(backfilled, tmp_path / "home")
    shopstream("run", "--source", str(live), "--until-idle", env=env)
    done = shopstream("backfill", "--source", str(history), env=env)
    assert "(their events: 2026-03-02 to 2026-03-02); rebuilt those days" in " ".join(
        done.stdout.split()
    )
    assert pending(backfilled) == 0

    streamed = fresh_database(pg_server, "streamed_range")
    stream_env = cli_env(streamed, tmp_path / "stream-home")
    for inbox in (live, history):
        shopstream("run", "--source", str(inbox), "--until-idle", env=stream_env)
    derived = ("realtime_metrics", "product_analytics", "customer_metrics", "user_sessions",
               "funnel_sessions")  # fmt: skip
    ours, theirs = snapshot(backfilled), snapshot(streamed)
    assert all(ours[name] == theirs[name] for name in derived)
    assert all(theirs[name] for name in derived)
