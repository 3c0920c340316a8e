"""``batch customers`` on loaded events: RFM, segments and predicted value."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import psycopg

from shopstream.analytics.customers import score
from tests.fixtures.cli import cli_env, generate_and_load, shopstream


def test_segments_follow_the_scores() -> None:
    customers = pl.DataFrame(
        {
            "recency_days": [1, 2, 3, 40, 50, 60, 70, 80, 90, 100],
            "frequency": [9, 8, 1, 7, 6, 1, 1, 5, 1, 1],
            "monetary": [900.0, 800, 10, 700, 600, 5, 4, 500, 3, 2],
        }
    )
    scored = score(customers)
    assert scored["r_score"].to_list() == [5, 5, 4, 4, 3, 3, 2, 2, 1, 1]
    assert scored["segment"].to_list()[:3] == ["Champions", "Champions", "Potential Loyalist"]
    assert scored["segment"].to_list()[-1] == "Lost"
    assert scored["rfm_score"][0] == "555"


def test_batch_customers_scores_every_purchaser_and_predicts_value(
    tmp_path: Path, database_url: str
) -> None:
    env = cli_env(database_url, tmp_path / "home")
    inbox = tmp_path / "in"
    generate_and_load(
        inbox, "--events", "60000", "--seed", "5", "--start", "2026-01-01", "--days", "120",
        env=env,
    )  # fmt: skip
    output = shopstream("batch", "customers", env=env).stdout
    assert "Customer segments" in output
    with psycopg.connect(database_url) as conn:
        first = conn.execute("SELECT * FROM customer_segments ORDER BY user_id").fetchall()
        purchasers, revenue = conn.execute(
            "SELECT count(DISTINCT user_id), sum(price * quantity) FROM events"
            " WHERE event_type = 'purchase'"
        ).fetchone() or (0, 0)
        stored = conn.execute(
            """SELECT count(*), sum(historical_clv), min(p_alive), max(p_alive),
                      bool_and(churn_probability = 1 - p_alive),
                      count(*) FILTER (WHERE predicted_clv_365d IS NULL)
                 FROM customer_segments"""
        ).fetchone()
    assert stored is not None
    assert stored[:2] == (purchasers, revenue)
    assert 0 <= stored[2] <= stored[3] <= 1 and stored[4] and stored[5] == 0
    shopstream("batch", "customers", env=env)  # again: the same scores and segments
    with psycopg.connect(database_url) as conn:
        again = conn.execute("SELECT * FROM customer_segments ORDER BY user_id").fetchall()
    assert [row[:-1] for row in again] == [row[:-1] for row in first]  # all but computed_at
