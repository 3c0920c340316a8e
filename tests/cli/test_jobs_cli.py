"""The jobs, quality and scheduler commands as users run them: subprocesses."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from tests.fixtures.api import serving
from tests.fixtures.cli import cli_env, shopstream
from tests.fixtures.history import insert_events, migrated

WIDE = {"COLUMNS": "200"}


def test_jobs_and_suites_are_listed(tmp_path: Path, database_url: str) -> None:
    env = cli_env(migrated(database_url), tmp_path / "home", **WIDE)
    jobs = shopstream("jobs", "list", env=env).stdout
    for name, schedule in (("daily", "0 2 * * *"), ("customers", "0 * * * *"),
                           ("quality", "*/15 * * * *"), ("alerts", "* * * * *")):  # fmt: skip
        assert name in jobs and schedule in jobs
    suites = shopstream("quality", "list", env=env).stdout
    for name in ("events", "volume", "rollups", "freshness", "quarantine"):
        assert name in suites
    bad = shopstream("jobs", "run", "reindex", env=env, check=False)
    assert bad.returncode == 2 and "reindex" in bad.stderr


def test_serve_with_the_scheduler_catches_up_at_start(tmp_path: Path, database_url: str) -> None:
    url = migrated(database_url)
    two_days_ago = datetime.now(UTC).replace(hour=12) - timedelta(days=2)
    with psycopg.connect(url) as conn:
        insert_events(conn, [(two_days_ago + timedelta(minutes=n), "view", "u1", None, None)
                             for n in range(30)])  # fmt: skip
    env = cli_env(url, tmp_path / "home", SHOPSTREAM_ROLLUPS="false", **WIDE)
    with serving(env, "--scheduler"):
        deadline = time.monotonic() + 60
        while True:
            with psycopg.connect(url) as conn:
                days = conn.execute(
                    """SELECT target_date FROM pipeline_execution_logs
                        WHERE job = 'daily' AND status = 'success' ORDER BY target_date"""
                ).fetchall()
            if len(days) == 2:
                break
            assert time.monotonic() < deadline, days
            time.sleep(0.5)
    assert [d[0] for d in days] == [two_days_ago.date(), two_days_ago.date() + timedelta(days=1)]
    history = shopstream("jobs", "history", "--job", "daily", env=env).stdout
    assert "catch-up" in history or "schedule" in history
