"""The shipped Great Expectations suites against a real PostgreSQL: a clean day passes;
faults a loader never makes fail the right expectation, are logged in data_quality_logs,
and raise an alert that resolves once the data is right again."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from shopstream.store.server import EmbeddedPostgres
from tests.fixtures.cli import cli_env, shopstream
from tests.fixtures.history import insert_events
from tests.fixtures.postgres import fresh_database
from tests.fixtures.receivers import Webhook

NOW = datetime.now(UTC)
CHECKED_DAY = (NOW - timedelta(days=3)).date()


@pytest.fixture(scope="module")
def inbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Ten days of traffic ending three hours ago (the feed has been stale since)."""
    out = tmp_path_factory.mktemp("quality-inbox")
    start = (NOW - timedelta(days=10, hours=3)).strftime("%Y-%m-%dT%H:%M:%S")
    env = cli_env(None, out / "home")
    shopstream("generate", "--out", str(out / "in"), "--events", "60000", "--days", "10",
               "--start", start, "--seed", "11", env=env)  # fmt: skip
    return out / "in"


@pytest.fixture
def loaded(
    pg_server: EmbeddedPostgres, inbox: Path, tmp_path: Path, webhook: Webhook
) -> Iterator[tuple[str, dict[str, str]]]:
    url = fresh_database(pg_server, "quality")
    env = cli_env(url, tmp_path / "home", SHOPSTREAM_ALERT_WEBHOOK_URL=webhook.url)
    shopstream("run", "--source", str(inbox), "--until-idle", env=env)
    yield url, env


def failed_checks(url: str) -> list[tuple[str, str, str | None, date | None]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            """SELECT suite, expectation, column_name, target_date FROM data_quality_logs
                WHERE NOT success AND run_id = (SELECT max(run_id) FROM data_quality_logs)
                ORDER BY 1, 2, 3"""
        ).fetchall()


def firing(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT fingerprint FROM alerts WHERE resolved_at IS NULL ORDER BY 1"
        ).fetchall()
    return [r[0] for r in rows]


def test_a_clean_day_passes_every_expectation(loaded: tuple[str, dict[str, str]]) -> None:
    url, env = loaded
    result = shopstream("quality", "run", "--date", str(CHECKED_DAY), env=env)
    assert "0 failed" in result.stdout
    with psycopg.connect(url) as conn:
        suites = conn.execute(
            "SELECT suite, count(*), bool_and(success) FROM data_quality_logs GROUP BY 1 ORDER BY 1"
        ).fetchall()
    assert suites == [("events", 8, True), ("quarantine", 1, True), ("rollups", 1, True),
                      ("volume", 1, True)]  # fmt: skip
    assert firing(url) == []
    history = shopstream(
        "jobs", "history", "--job", "quality", env={**env, "COLUMNS": "200"}
    ).stdout
    assert "success" in history


def test_half_the_volume_fails_the_volume_band(loaded: tuple[str, dict[str, str]]) -> None:
    url, env = loaded
    with psycopg.connect(url) as conn:
        conn.execute(
            """DELETE FROM events WHERE event_id IN (
                   SELECT event_id FROM events
                    WHERE event_timestamp >= %(d)s::date AND event_timestamp < %(d)s::date + 1
                      AND abs(hashtext(event_id::text)) %% 2 = 0)""",
            {"d": CHECKED_DAY},
        )
    result = shopstream("quality", "run", "--date", str(CHECKED_DAY), env=env, check=False)
    assert result.returncode == 1
    failed = failed_checks(url)
    assert ("volume", "expect_column_values_to_be_between", "volume_ratio", CHECKED_DAY) in failed
    assert not [f for f in failed if f[0] == "events"]
    assert "quality:volume:expect_column_values_to_be_between:volume_ratio" in firing(url)


def test_ids_duplicated_behind_the_loaders_back_fail_uniqueness(
    loaded: tuple[str, dict[str, str]], webhook: Webhook
) -> None:
    url, env = loaded
    with psycopg.connect(url) as conn:
        conn.execute(
            """INSERT INTO events SELECT * FROM events
                WHERE event_timestamp >= %(d)s::date AND event_timestamp < %(d)s::date + 1
                LIMIT 5""",
            {"d": CHECKED_DAY},
        )
    result = shopstream("quality", "run", "--date", str(CHECKED_DAY), "--suite", "events",
                        env=env, check=False)  # fmt: skip
    assert result.returncode == 1
    assert failed_checks(url) == [
        ("events", "expect_column_values_to_be_unique", "event_id", CHECKED_DAY)
    ]
    key = "quality:events:expect_column_values_to_be_unique:event_id"
    assert firing(url) == [key]
    sent = [a for body in webhook.bodies for a in body["alerts"]]
    assert [(a["fingerprint"], a["status"], a["severity"]) for a in sent] == [
        (key, "firing", "critical")
    ]


def test_a_stale_feed_fails_freshness_until_events_arrive_again(
    loaded: tuple[str, dict[str, str]], webhook: Webhook
) -> None:
    url, env = loaded
    result = shopstream("quality", "run", "--suite", "freshness", env=env, check=False)
    assert result.returncode == 1
    key = "quality:freshness:expect_column_values_to_be_between:minutes_since_newest_event"
    assert firing(url) == [key]
    with psycopg.connect(url) as conn:
        insert_events(conn, [(datetime.now(UTC), "view", "u1", None, None)], batch_id=-1)
    shopstream("quality", "run", "--suite", "freshness", env=env)
    assert firing(url) == []
    sent = [(a["fingerprint"], a["status"]) for body in webhook.bodies for a in body["alerts"]]
    assert sent == [(key, "firing"), (key, "resolved")]
