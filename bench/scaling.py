"""Per-core costs of each stage of a Spark micro-batch, for SCALING.md's capacity model:
the executor's work (parse, validate, stage by COPY) and the driver's commit (merge into
``events``, rollups and sessions), each timed alone on one core, on the same rows.

    .venv/bin/python bench/scaling.py [--events 400000]

PostgreSQL's share is timed from the client (the server does the work while the client
waits), so parse and validate are client CPU, while stage, merge and rollups are mostly
server CPU.
"""

from __future__ import annotations

import argparse
import subprocess
import time
from datetime import datetime
from pathlib import Path

import polars as pl
import psycopg

from common import SHOPSTREAM, env_for, fresh_database, workspace
from shopstream.contract import StagedRows
from shopstream.engines.spark.parse import FILE, QUARANTINE, ROW, parse_files
from shopstream.engines.spark.stage import split_quarantine
from shopstream.parse.mapping import NO_CHOICE
from shopstream.parse.normalize import EVENT_SCHEMA
from shopstream.parse.validate import split_valid
from shopstream.schema import FIELD_NAMES
from shopstream.settings import Settings
from shopstream.store.copy import quarantine_for_copy
from shopstream.store.derived import derive, prepare_connection, write_derived
from shopstream.store.partitions import EventMonths
from shopstream.store.staging import (
    StagedReader,
    drop_stage,
    merge_staged,
    stage_partition,
    staged_months,
)
from shopstream.validation.current import current_rules
from shopstream.validation.limits import DEFAULT_LIMITS


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=400_000)
    args = parser.parse_args()
    with workspace("shopstream-bench-scaling-") as (work, base_url):
        inbox = work / "in"
        url = fresh_database(base_url, "bench_scaling")
        env = env_for(url, work / "home")
        subprocess.run(
            [*SHOPSTREAM, "generate", "--out", str(inbox), "--events", str(args.events),
             "--seed", "9", "--dirty", "0.01", "--duplicates", "0.02", "--file-rows", "50000"],
            env=env, check=True, capture_output=True,
        )  # fmt: skip
        subprocess.run([*SHOPSTREAM, "db", "migrate"], env=env, check=True, capture_output=True)
        costs = measure(sorted(inbox.glob("*.csv")), url)
    rows = costs.pop("rows")
    wal = costs.pop("wal bytes per merged row")
    print(f"{rows:,.0f} input rows, one core each stage; {wal:,.0f} WAL bytes per merged row\n")
    print(f"{'stage':<52} {'seconds':>8} {'rows/s/core':>12} {'µs/row':>8}")
    for name, seconds in costs.items():
        print(f"{name:<52} {seconds:8.2f} {rows / seconds:12,.0f} {seconds / rows * 1e6:8.2f}")


def measure(files: list[Path], url: str) -> dict[str, float]:
    import pyarrow as pa

    costs: dict[str, float] = {}
    started = time.perf_counter()
    batch = pa.RecordBatch.from_pylist([{"path": str(f), "content": f.read_bytes()} for f in files])
    parsed = [pl.from_arrow(b) for b in parse_files(iter([batch]), NO_CHOICE, DEFAULT_LIMITS)]
    frame = pl.concat([f for f in parsed if isinstance(f, pl.DataFrame)])
    costs["executor: parse (read, map, normalise; raw lines)"] = time.perf_counter() - started
    rows = int(frame.filter(pl.col("kind") == FILE)["rows_read"].sum())

    started = time.perf_counter()
    candidates = frame.filter(pl.col("kind") == ROW).drop("rules", "fields")
    passing, failing, _ = split_valid(candidates, current_rules(Settings()))
    quarantine = split_quarantine(frame.filter(pl.col("kind") == QUARANTINE), failing)
    events = passing.select(
        *(pl.col(n).cast(EVENT_SCHEMA[n]) for n in FIELD_NAMES), "source", "line_no"
    )
    stored = quarantine_for_copy(quarantine, 1, DEFAULT_LIMITS.excerpt_bytes)
    costs["executor: validate (14 rules) and split"] = time.perf_counter() - started

    with psycopg.connect(url) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        conn.commit()
        started = time.perf_counter()
        part = stage_partition(conn, "sbench_", 0, events, stored)
        costs["executor: stage (COPY into UNLOGGED staging)"] = time.perf_counter() - started
        staged = StagedRows("sbench_", (part,))
        with conn.transaction():  # the events' monthly partitions, as the loader makes them
            months = staged_months(conn, staged)
        EventMonths().ensure(conn, months)
        # Each measure rolls back (psycopg.Rollback), so the next one finds an empty store.
        started = time.perf_counter()
        with conn.transaction():
            before = _wal_position(conn)
            merged = merge_staged(conn, staged, 1, datetime(2000, 1, 1))
            costs["driver commit: merge into events (dedupe, PK, WAL)"] = (
                time.perf_counter() - started
            )
            wal_per_row = (_wal_position(conn) - before) / merged.inserted
            raise psycopg.Rollback
        reader = StagedReader(url)
        started = time.perf_counter()
        with conn.transaction():
            merged = merge_staged(conn, staged, 1, datetime(2000, 1, 1), reader=reader)
            costs["driver commit: merge, rows read back meanwhile (wall)"] = (
                time.perf_counter() - started
            )
            assert merged.events is not None
            prepare_connection(conn)
            started = time.perf_counter()
            write_derived(conn, derive(merged.events))
            costs["driver commit: rollups, sessions, funnels"] = time.perf_counter() - started
            raise psycopg.Rollback
        reader.close()
        with conn.transaction():
            drop_stage(conn, "sbench_")
    costs["rows"] = rows
    costs["wal bytes per merged row"] = wal_per_row
    return costs


def _wal_position(conn: psycopg.Connection[tuple[object, ...]]) -> int:
    row = conn.execute("SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn").fetchone()
    assert row is not None
    return int(str(row[0]))


if __name__ == "__main__":
    main()
