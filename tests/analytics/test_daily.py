"""``batch daily`` against DuckDB over the very files that were loaded (clean input)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import psycopg

from tests.fixtures.cli import cli_env, generate_and_load, shopstream

DAY = "2026-01-01"


def test_daily_aggregations_match_duckdb_over_the_input_and_are_idempotent(
    tmp_path: Path, database_url: str
) -> None:
    env = cli_env(database_url, tmp_path / "home")
    inbox = tmp_path / "in"
    generate_and_load(inbox, "--events", "20000", "--seed", "3", "--format", "canonical", env=env)
    shopstream("batch", "daily", "--date", DAY, env=env)
    with psycopg.connect(database_url) as conn:
        query = """SELECT category, event_type, total_events, total_revenue, unique_users,
                          unique_sessions, conversion_rate, avg_order_value, top_products
                     FROM daily_aggregations WHERE date = %s ORDER BY 1, 2"""
        first = conn.execute(query, (DAY,)).fetchall()
        created = conn.execute("SELECT min(created_at) FROM daily_aggregations").fetchone()
    shopstream("batch", "daily", "--date", DAY, env=env)  # again: the same rows
    with psycopg.connect(database_url) as conn:
        assert conn.execute(query, (DAY,)).fetchall() == first
        assert conn.execute("SELECT min(created_at) FROM daily_aggregations").fetchone() == created

    files = str(inbox / "*.csv")
    expected = duckdb.sql(
        f"""SELECT category, event_type, count(*),
                   sum(CASE WHEN event_type = 'purchase' THEN price * quantity ELSE 0 END),
                   count(DISTINCT user_id), count(DISTINCT session_id)
              FROM read_csv('{files}', header = true, all_varchar = false)
             WHERE CAST(event_timestamp AS DATE) = DATE '{DAY}'
             GROUP BY 1, 2 ORDER BY 1, 2"""
    ).fetchall()
    assert [(r[0], r[1], r[2], float(r[3]), r[4], r[5]) for r in first] == [
        (r[0], r[1], r[2], round(float(r[3]), 2), r[4], r[5]) for r in expected
    ]
    top = duckdb.sql(
        f"""SELECT product_id, count(*) FROM read_csv('{files}', header = true)
             WHERE CAST(event_timestamp AS DATE) = DATE '{DAY}' AND event_type = 'view'
               AND category = 'Books'
             GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 5"""
    ).fetchall()
    books_views = next(r for r in first if r[0] == "Books" and r[1] == "view")
    assert [(p["product_id"], p["events"]) for p in books_views[8]] == [tuple(t) for t in top]
