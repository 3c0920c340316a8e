"""``shopstream rebuild`` after a deliberate corruption of the derived tables restores
exactly what streaming produced."""

from __future__ import annotations

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
