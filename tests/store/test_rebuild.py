"""``shopstream rebuild`` after a deliberate corruption of the derived tables restores
exactly what streaming produced."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import psycopg

from tests.fixtures.analytics import assert_rollups_match_events
from tests.fixtures.cli import cli_env, generate_and_load, shopstream
from tests.fixtures.snapshots import snapshot

DERIVED = ("realtime_metrics", "product_analytics", "customer_metrics", "user_sessions",
           "funnel_sessions")  # fmt: skip


def derived(url: str) -> dict[str, list[tuple[object, ...]]]:
    return {name: rows for name, rows in snapshot(url).items() if name in DERIVED}


def test_rebuild_restores_corrupted_rollups_exactly(tmp_path: Path, database_url: str) -> None:
    env = cli_env(database_url, tmp_path / "home")
    generate_and_load(tmp_path / "in", "--events", "15000", "--days", "2", "--seed", "31",
                      "--format", "canonical", "--duplicates", "0.02", "--late", "0.05",
                      env=env)  # fmt: skip
    streamed = derived(database_url)
    assert all(streamed.values())
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE realtime_metrics SET events = events + 1, revenue = revenue * 2")
        conn.execute("DELETE FROM user_sessions WHERE random() < 0.3")
        conn.execute("UPDATE customer_metrics SET orders = orders + 5")
    assert derived(database_url) != streamed

    result = shopstream("rebuild", "--chunk-rows", "2000", env=env)  # several chunks
    assert "rebuilt the derived tables" in result.stdout
    assert derived(database_url) == streamed
    assert_rollups_match_events(database_url)


def test_rebuild_of_a_day_range_restores_it_and_leaves_the_rest(
    tmp_path: Path, database_url: str
) -> None:
    """Rows of the range and of its customers come back as streamed; a corruption outside
    them stays (so only the range was rebuilt). A session id shared by two customers across
    the range's first midnight takes both customers along."""
    env = cli_env(database_url, tmp_path / "home")
    inbox = tmp_path / "in"
    generate_and_load(inbox, "--events", "12000", "--days", "4", "--seed", "32",
                      "--format", "canonical", env=env)  # fmt: skip
    with psycopg.connect(database_url) as conn:
        days = [r[0] for r in conn.execute(
            "SELECT DISTINCT (event_timestamp AT TIME ZONE 'UTC')::date FROM events ORDER BY 1"
        ).fetchall()]  # fmt: skip
    day, later = days[1], days[-1]
    midnight = datetime.combine(day, datetime.min.time())
    shared = [  # a guest and then a customer in one session, across the range's start
        {"user_id": "guest_shared", "event_type": "page_view", "minutes": -20},
        {"user_id": "zz_shared", "event_type": "view", "minutes": 5},
        {"user_id": "zz_shared", "event_type": "add_to_cart", "minutes": 9},
    ]
    (inbox / "shared.jsonl").write_text("".join(
        json.dumps({"event_id": str(uuid.uuid4()), "event_type": e["event_type"],
                    "user_id": e["user_id"], "session_id": "shared-session",
                    "event_timestamp": (midnight + timedelta(minutes=e["minutes"])).isoformat(),
                    "product_id": "p-shared", "category": "shared", "price": 10.0}) + "\n"
        for e in shared
    ))  # fmt: skip
    shopstream("run", "--source", str(inbox), "--until-idle", env=env)
    streamed = derived(database_url)
    with psycopg.connect(database_url) as conn:
        in_range = "(SELECT DISTINCT user_id FROM events WHERE event_timestamp::date = %s)"
        windows = "window_start >= %s AND window_start < %s + 1"
        conn.execute(f"UPDATE realtime_metrics SET events = events + 1 WHERE {windows}", (day, day))
        conn.execute("UPDATE product_analytics SET views = views + 3 WHERE day = %s", (day,))
        conn.execute("UPDATE funnel_sessions SET sessions = sessions + 2 WHERE day = %s", (day,))
        some = f"user_id IN {in_range} AND random() < 0.3"
        conn.execute(f"DELETE FROM user_sessions WHERE {some}", (day,))
        conn.execute("DELETE FROM user_sessions WHERE session_key = 'shared-session'")
        conn.execute(f"UPDATE customer_metrics SET orders = 5 WHERE user_id IN {in_range}", (day,))
        conn.execute("UPDATE product_analytics SET views = views + 100 WHERE day = %s", (later,))
    assert derived(database_url) != streamed

    result = shopstream("rebuild", "--from", str(day), "--to", str(day), "--chunk-rows", "900",
                        env=env)  # fmt: skip
    assert f"rebuilt {day} to {day}" in result.stdout
    rebuilt = derived(database_url)
    assert rebuilt != streamed  # the later day's corruption is outside the range
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE product_analytics SET views = views - 100 WHERE day = %s", (later,))
    assert derived(database_url) == streamed
    assert_rollups_match_events(database_url)

    with psycopg.connect(database_url) as conn:  # an open end reaches the last day
        conn.execute("UPDATE product_analytics SET views = views + 100 WHERE day = %s", (later,))
    opened = shopstream("rebuild", "--from", str(later), env=env)
    assert f"rebuilt from {later} on" in opened.stdout
    assert derived(database_url) == streamed

    backwards = shopstream("rebuild", "--from", str(later), "--to", str(day), env=env, check=False)
    assert backwards.returncode == 2 and "before it starts" in backwards.stderr
    with psycopg.connect(database_url) as conn:
        first = "(SELECT min(batch_id) FROM batches)"
        conn.execute(f"UPDATE batches SET derived_pending = true WHERE batch_id = {first}")
    pending = shopstream("rebuild", "--from", str(day), env=env, check=False)
    assert pending.returncode == 1 and "covers those days" in " ".join(pending.stderr.split())
    told = " ".join(shopstream("status", env=env).stdout.split())
    assert f"batches awaiting rebuild hold events from {days[0]}" in told
    assert "shopstream rebuild --from" in told
    assert derived(database_url) == streamed
