"""The generated DAG under a real Airflow, in a virtual environment of its own (make
install builds .venv-airflow), against a throwaway metadata database: its tasks run the real
jobs on a real PostgreSQL; a failed task raises a ShopStream alert, its next success
resolves it."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from tests.fixtures.cli import cli_env, shopstream
from tests.fixtures.history import insert_events, migrated

AIRFLOW = Path(
    os.environ.get(
        "SHOPSTREAM_TEST_AIRFLOW", Path(__file__).parents[2] / ".venv-airflow/bin/airflow"
    )
)
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not AIRFLOW.exists(), reason=f"no Airflow at {AIRFLOW} (make install)"),
]


def airflow(home: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    run_env = {
        **env,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
    }
    return subprocess.run([str(AIRFLOW), *args], env=run_env, capture_output=True, text=True,
                          timeout=300, check=False)  # fmt: skip


def runs(url: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            """SELECT job, trigger, target_date, status FROM pipeline_execution_logs
                ORDER BY run_id"""
        ).fetchall()


def firing(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT fingerprint FROM alerts WHERE resolved_at IS NULL").fetchall()
    return [r[0] for r in rows]


def test_the_dag_runs_the_jobs_and_alerts_on_failure(database_url: str, tmp_path: Path) -> None:
    url = migrated(database_url)
    day = date(2026, 4, 7)
    with psycopg.connect(url) as conn:
        nine = datetime(2026, 4, 7, 9, tzinfo=UTC)
        insert_events(conn, [(nine + timedelta(minutes=n), "purchase", f"u{n % 5}", 20.0, "EUR")
                             for n in range(40)])  # fmt: skip
    # Written straight into events, so no rollups to check against: that suite is off.
    env = cli_env(url, tmp_path / "home", SHOPSTREAM_JOB_RETRIES="0", SHOPSTREAM_ROLLUPS="false")
    home = tmp_path / "airflow"
    (home / "dags").mkdir(parents=True)
    dag = shopstream("airflow", "dag", "--retries", "0",
                     "--command", f"{sys.executable} -m shopstream", env=env).stdout  # fmt: skip
    (home / "dags" / "shopstream.py").write_text(dag)
    migrated_meta = airflow(home, env, "db", "migrate")
    assert migrated_meta.returncode == 0, migrated_meta.stderr[-3000:]

    # A failing run: the daily task fails, its callback raises an alert; nothing runs after.
    with psycopg.connect(url) as conn:
        conn.execute("ALTER TABLE daily_aggregations RENAME TO daily_aggregations_away")
    failed = airflow(home, env, "dags", "test", "shopstream", "2026-04-08")
    assert failed.returncode != 0
    assert runs(url) == [("daily", "airflow", day, "failed")]
    assert firing(url) == ["airflow:shopstream:daily"]

    with psycopg.connect(url) as conn:
        conn.execute("ALTER TABLE daily_aggregations_away RENAME TO daily_aggregations")
    passed = airflow(home, env, "dags", "test", "shopstream", "2026-04-08")
    assert passed.returncode == 0, (passed.stdout + passed.stderr)[-5000:]
    assert runs(url)[1:] == [
        ("daily", "airflow", day, "success"),
        ("customers", "airflow", None, "success"),
        ("quality", "airflow", day, "success"),
    ]
    assert firing(url) == []  # the daily task's success resolved it
    with psycopg.connect(url) as conn:
        stored = conn.execute(
            "SELECT sum(total_events) FROM daily_aggregations WHERE date = %s", (day,)
        ).fetchone()
    assert stored == (40,)
