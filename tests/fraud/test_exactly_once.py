"""Scores and alerts are exactly once: kill -9 while batches are being scored, restart,
and every order has one score and every alert exists once, as in an uninterrupted run."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from shopstream.store.server import EmbeddedPostgres
from tests.fixtures.cli import cli_env, kill_9_at_random, shopstream
from tests.fixtures.postgres import fresh_database

pytestmark = pytest.mark.slow


def _fraud_state(url: str) -> tuple[int, int, int, int, str]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            """SELECT (SELECT count(*) FROM events WHERE event_type IN ('purchase', 'refund')),
                      (SELECT count(*) FROM fraud_scores),
                      (SELECT count(DISTINCT event_id) FROM fraud_scores),
                      (SELECT count(*) - count(DISTINCT event_id) FROM fraud_alerts),
                      (SELECT md5(coalesce(string_agg(event_id::text || score::text, ','
                                                      ORDER BY event_id), ''))
                         FROM fraud_alerts)"""
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2]), int(row[3]), str(row[4])


def test_kill_9_while_scoring_scores_every_order_once(
    tmp_path: Path, database_url: str, pg_server: EmbeddedPostgres
) -> None:
    inbox = tmp_path / "in"
    env = cli_env(database_url, tmp_path / "home", SHOPSTREAM_MAX_BATCH_ROWS="5000")
    shopstream(
        "generate", "--out", str(inbox), "--events", "80000", "--seed", "17", "--format",
        "canonical", "--fraud", "0.02", "--duplicates", "0.02", "--file-rows", "4000",
        env=env,
    )  # fmt: skip
    reference = fresh_database(pg_server, "fraud_ref")
    shopstream("run", "--source", str(inbox), "--until-idle", env=cli_env(reference, tmp_path))

    run = ("run", "--source", str(inbox), "--until-idle")
    kills = kill_9_at_random(run, env, seed=3, low=1.0, high=2.5)
    shopstream("run", "--source", str(inbox), "--until-idle", env=env)
    assert kills >= 1
    orders, scores, scored_orders, doubled_alerts, alerts = _fraud_state(database_url)
    assert orders == scores == scored_orders and doubled_alerts == 0
    # The input is in event-time order, so every order saw the same past: the same alerts.
    assert (orders, alerts) == (_fraud_state(reference)[0], _fraud_state(reference)[4])
