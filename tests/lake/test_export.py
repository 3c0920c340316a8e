"""The lake archive: events and quarantine exported exactly once to Delta Lake on a real S3
API (moto's server on loopback) and on a local folder, read back through DuckDB."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from deltalake import DeltaTable

from shopstream.lake import export as export_module
from shopstream.lake.export import export_table
from shopstream.lake.location import Lake
from tests.fixtures.cli import cli_env, shopstream
from tests.fixtures.s3 import S3Bucket


def load(env: dict[str, str], inbox: Path, *, events: int, days: float, seed: int) -> None:
    """Synthetic history (with bad rows and re-sent ones) loaded by the runner."""
    start = (datetime.now(UTC) - timedelta(days=days + 1)).strftime("%Y-%m-%dT%H:%M:%S")
    shopstream(
        "generate", "--out", str(inbox), "--events", str(events), "--days", str(days),
        "--start", start, "--seed", str(seed), "--format", "canonical", "--dirty", "0.03",
        "--duplicates", "0.02", "--file-rows", "2500", env=env,
    )  # fmt: skip
    shopstream("run", "--source", str(inbox), "--until-idle", env=env)


def lake_query(env: dict[str, str], statement: str) -> list[dict[str, object]]:
    result = shopstream("lake", "query", statement, "--format", "json", env=env)
    rows: list[dict[str, object]] = json.loads(result.stdout)
    return rows


def not_in_lake(env: dict[str, str]) -> int:
    """What `shopstream status` says the lake lacks, in batches."""
    out = shopstream("status", env=env | {"COLUMNS": "200"}).stdout
    line = next(x for x in out.splitlines() if "batches not in the lake" in x)
    return int(line.split("batches not in the lake")[1].strip(" │|").replace(",", ""))


def per_day(url: str) -> list[dict[str, object]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            """SELECT (event_timestamp AT TIME ZONE 'UTC')::date, count(*),
                      coalesce(sum(price * quantity), 0)
                 FROM events GROUP BY 1 ORDER BY 1"""
        ).fetchall()
    return [{"day": str(d), "events": n, "revenue": f"{r:.2f}"} for d, n, r in rows]


def test_export_to_s3_is_exact_adds_nothing_twice_and_follows_a_new_column(
    tmp_path: Path, database_url: str, s3_bucket: S3Bucket
) -> None:
    env = cli_env(
        database_url, tmp_path / "home",
        SHOPSTREAM_LAKE_URI=f"s3://{s3_bucket.name}/shop", **s3_bucket.env,
    )  # fmt: skip
    load(env, tmp_path / "in", events=12_000, days=6, seed=3)
    assert not_in_lake(env) > 0
    shopstream("lake", "export", env=env)
    assert not_in_lake(env) == 0

    by_day = """SELECT CAST(event_date AS VARCHAR) AS day, count(*) AS events,
                       CAST(coalesce(sum(price * quantity), 0) AS DECIMAL(18, 2)) AS revenue
                  FROM events GROUP BY 1 ORDER BY 1"""
    lake_days = [
        {"day": r["day"], "events": r["events"], "revenue": f"{float(str(r['revenue'])):.2f}"}
        for r in lake_query(env, by_day)
    ]
    assert lake_days == per_day(database_url) and len(lake_days) >= 6
    with psycopg.connect(database_url) as conn:
        quarantined = conn.execute(
            "SELECT count(*), sum(records)::bigint FROM quarantine"
        ).fetchone()
    assert quarantined is not None and quarantined[0] > 0
    lake_quarantine = lake_query(
        env, "SELECT count(*) AS n, CAST(sum(records) AS BIGINT) AS r FROM quarantine"
    )
    assert (lake_quarantine[0]["n"], lake_quarantine[0]["r"]) == quarantined
    assert any("shop/events/_delta_log/" in key for key in s3_bucket.keys("shop/"))

    storage = Lake.at(f"s3://{s3_bucket.name}/shop", env).storage_options
    version = DeltaTable(f"s3://{s3_bucket.name}/shop/events", storage_options=storage).version()
    again = shopstream("lake", "export", env=env)
    assert "events: 0 rows" in again.stdout
    table = DeltaTable(f"s3://{s3_bucket.name}/shop/events", storage_options=storage)
    assert table.version() == version

    # A column added to events reaches the lake with the next export (schema merged).
    with psycopg.connect(database_url) as conn:
        conn.execute("ALTER TABLE events ADD COLUMN loyalty_tier text")
    load(env, tmp_path / "more", events=3_000, days=1, seed=4)
    with psycopg.connect(database_url) as conn:
        tiered = conn.execute(
            "UPDATE events SET loyalty_tier = 'gold' WHERE batch_id > "
            "(SELECT max(batch_id) FROM lake_exports WHERE lake_table = 'events')"
        ).rowcount
    shopstream("lake", "export", env=env)
    counts = lake_query(env, "SELECT count(loyalty_tier) AS tiered, count(*) AS n FROM events")
    assert counts[0]["tiered"] == tiered > 0
    assert counts[0]["n"] == sum(int(str(d["events"])) for d in per_day(database_url))


@pytest.mark.parametrize("fails_in", ["_append", "_mark_committed"])
def test_a_crash_between_lake_and_ledger_neither_loses_nor_doubles_rows(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch, fails_in: str
) -> None:
    """Before the Delta commit the export is forgotten and planned again; after it, the
    Delta log's transaction version shows the lake holds it."""
    env = cli_env(database_url, tmp_path / "home", SHOPSTREAM_MAX_BATCH_ROWS="2500")
    load(env, tmp_path / "in", events=8_000, days=2, seed=5)
    lake = Lake.at(str(tmp_path / "lake"), {})
    real = getattr(export_module, fails_in)
    calls = {"n": 0}

    def crash_on_second(*args: object, **kwargs: object) -> object:
        calls["n"] += 1
        if calls["n"] == 2:
            raise ConnectionResetError("the exporter died here")
        return real(*args, **kwargs)

    monkeypatch.setattr(export_module, fails_in, crash_on_second)
    with psycopg.connect(database_url, autocommit=True) as conn:
        with pytest.raises(ConnectionResetError):
            export_table(conn, database_url, lake, "events", max_rows=3_000)
        pending = conn.execute(
            "SELECT count(DISTINCT export_id) FROM lake_exports WHERE status = 'pending'"
        ).fetchone()
        assert pending == (1,)
        monkeypatch.setattr(export_module, fails_in, real)
        outcome = export_table(conn, database_url, lake, "events", max_rows=3_000)
        ledger = conn.execute(
            """SELECT count(*) FILTER (WHERE status <> 'committed'), sum(rows),
                      (SELECT count(*) FROM events), (SELECT count(*) FROM batches)
                 FROM lake_exports WHERE lake_table = 'events'"""
        ).fetchone()
    if fails_in == "_append":
        assert (outcome.recovered, outcome.forgotten) == (0, 1)
    else:
        assert (outcome.recovered, outcome.forgotten) == (1, 0)
    assert ledger is not None
    not_committed, ledger_rows, stored, batches = ledger
    assert not_committed == 0 and ledger_rows == stored
    held = DeltaTable(lake.table_uri("events")).to_pyarrow_table(columns=["event_id"])
    assert held.num_rows == stored == len(set(held.column("event_id").to_pylist()))
    with psycopg.connect(database_url) as conn:
        exported = conn.execute(
            "SELECT count(*) FROM lake_exports WHERE lake_table = 'events'"
        ).fetchone()
    assert exported == (batches,)
