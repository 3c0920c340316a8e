"""History: loading events shuffled over a month, and archiving them to the lake.

    .venv/bin/python bench/history.py [--events 1000000] [--days 30]

In one run, on the same input (a month of events whose files each hold moments from the
whole month, like an export of old logs):

- streaming load with rollups on, and with rollups off (the raw loading rate);
- the deferred path: rollups off, then ``shopstream rebuild`` (one set-based pass);
- ``shopstream lake export`` of the loaded events (goal >= 200,000 events/s);
- ``shopstream lake query``: a per-day count over the whole archive.

Goals (issue "History"): the deferred path >= 0.8 x the rollups-off rate; streaming with
rollups on >= 0.5 x. Uses SHOPSTREAM_DATABASE_URL when set, otherwise a private PostgreSQL.
"""

from __future__ import annotations

import argparse
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import psycopg

from common import SHOPSTREAM, committed_window, env_for, fresh_database, workspace


def shuffled_month(work: Path, events: int, days: int) -> Path:
    """Generated history, then its rows shuffled across files of 10,000."""
    ordered = work / "ordered"
    start = (datetime.now(UTC) - timedelta(days=days + 1)).strftime("%Y-%m-%dT%H:%M:%S")
    subprocess.run(
        [*SHOPSTREAM, "generate", "--out", str(ordered), "--events", str(events),
         "--days", str(days), "--start", start, "--seed", "11", "--format", "canonical",
         "--file-rows", "50000"],
        check=True, capture_output=True,
    )  # fmt: skip
    frame = pl.concat(
        [pl.read_csv(p, infer_schema=False) for p in sorted(ordered.glob("*.csv"))]
    ).sample(fraction=1.0, shuffle=True, seed=11)
    out = work / "shuffled"
    out.mkdir()
    for n, offset in enumerate(range(0, frame.height, 10_000)):
        frame.slice(offset, 10_000).write_csv(out / f"events_{n:05d}.csv")
    return out


def load(name: str, base: str, work: Path, inbox: Path, **settings: str) -> tuple[str, float]:
    """Fraud scoring is off here (bench/fraud.py measures it): this compares the rollups'
    cost with the loading they ride on."""
    url = fresh_database(base, name)
    env = {**env_for(url, work / name), "SHOPSTREAM_LOG_LEVEL": "WARNING",
           "SHOPSTREAM_FRAUD": "false", **settings}  # fmt: skip
    subprocess.run([*SHOPSTREAM, "run", "--source", str(inbox), "--until-idle"], env=env,
                   check=True, capture_output=True)  # fmt: skip
    rows, seconds = committed_window(url)
    return url, rows / seconds


def timed(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run([*SHOPSTREAM, *args], env=env, check=True, capture_output=True,
                          text=True)  # fmt: skip
    return time.perf_counter() - started, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=30)
    args = parser.parse_args()
    with workspace("shopstream-bench-history-") as (work, base):
        inbox = shuffled_month(work, args.events, args.days)
        _, rollups_on = load("hist_on", base, work, inbox)
        print(f"streaming, rollups on      {rollups_on:>10,.0f} events/s")
        url, rollups_off = load("hist_off", base, work, inbox, SHOPSTREAM_ROLLUPS="false")
        print(f"streaming, rollups off     {rollups_off:>10,.0f} events/s")
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT count(*) FROM events").fetchone()
        stored = int(row[0]) if row else 0
        env = {**env_for(url, work / "hist_off"), "SHOPSTREAM_LOG_LEVEL": "WARNING"}
        load_seconds = stored / rollups_off
        rebuild_seconds, _ = timed(["rebuild"], env)
        deferred = stored / (load_seconds + rebuild_seconds)
        print(f"rollups off + rebuild      {deferred:>10,.0f} events/s"
              f"  (rebuild {rebuild_seconds:.1f} s)")  # fmt: skip
        with psycopg.connect(url) as conn:
            middle = conn.execute(
                "SELECT (min(event_timestamp) + (max(event_timestamp) - min(event_timestamp)) / 2)"
                "::date FROM events"
            ).fetchone()
        day = str(middle[0]) if middle else ""
        range_seconds, out = timed(["rebuild", "--from", day, "--to", day], env)
        print(f"rebuild --from/--to 1 day  {range_seconds:>10.1f} s  ({' '.join(out.split())})")
        with psycopg.connect(url, autocommit=True) as conn:  # the rebuild's aftermath settles
            conn.execute("VACUUM ANALYZE")
            conn.execute("CHECKPOINT")
        export_seconds, _ = timed(["lake", "export"], env)
        print(f"lake export                {stored / export_seconds:>10,.0f} events/s"
              f"  ({stored:,} events in {export_seconds:.1f} s, CLI start included)")  # fmt: skip
        again_seconds, _ = timed(["lake", "export"], env)
        steady = stored / max(export_seconds - again_seconds, 1e-9)
        print(f"lake export again          {again_seconds:>10.1f} s (adds nothing: the fixed cost)")
        print(f"lake export, less that     {steady:>10,.0f} events/s")
        query_seconds, out = timed(
            ["lake", "query", "SELECT count(DISTINCT event_date) AS days, count(*) AS n"
             " FROM events", "--format", "csv"], env,
        )  # fmt: skip
        print(
            f"lake query (whole month)   {query_seconds:>10.1f} s  {out.strip().splitlines()[-1]}"
        )
        print()
        print(f"rollups on / off:          {rollups_on / rollups_off:.2f} x (goal >= 0.5)")
        print(f"deferred / rollups off:    {deferred / rollups_off:.2f} x (goal >= 0.8)")
        print(f"lake export:               {stored / export_seconds:,.0f} events/s with the CLI's"
              f" start, {steady:,.0f} without (goal >= 200,000)")  # fmt: skip


if __name__ == "__main__":
    main()
