"""Dashboard query benchmark: p50/p95 latency of each dashboard query over 10M events.

    .venv/bin/python bench/queries.py [--events 10000000] [--days 30] [--runs 60]
    .venv/bin/python bench/queries.py --loaded URL   # time an already loaded database

Loads generated events through ``shopstream run`` (rollups on), runs ``batch customers``,
then times the queries the dashboard and API issue (``shopstream.analytics.dashboard``),
each over windows that slide back from the newest data so no two runs ask the same thing.
Uses SHOPSTREAM_DATABASE_URL when set, otherwise a private PostgreSQL it starts itself.
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import psycopg

from common import SHOPSTREAM, committed_window, env_for, fresh_database, workspace
from shopstream.analytics import dashboard

GOAL_P95_MS = 50.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--days", type=float, default=30.0)
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("--loaded", help="URL of a database already loaded; skip the load")
    args = parser.parse_args()
    if args.loaded:
        time_queries(args.loaded, args.runs)
        return
    with workspace("shopstream-bench-queries-") as (work, base_url):
        url = fresh_database(base_url, "bench_queries")
        env = env_for(url, work / "home")
        inbox = work / "in"
        generate = ["generate", "--out", str(inbox), "--events", str(args.events)]
        generate += ["--days", str(args.days), "--seed", "7", "--file-rows", "100000"]
        generate += ["--format", "canonical"]  # with categories, brands, sessions
        subprocess.run([*SHOPSTREAM, *generate], env=env, check=True, capture_output=True)
        started = time.perf_counter()
        subprocess.run(
            [*SHOPSTREAM, "run", "--source", str(inbox), "--until-idle", "--delete"],
            env=env, check=True, capture_output=True,
        )  # fmt: skip
        wall = time.perf_counter() - started
        rows, window = committed_window(url)
        print(f"loaded {rows:,} events (rollups on) in {wall:.0f} s: {rows / wall:,.0f} ev/s wall,")
        print(f"  {rows / window:,.0f} ev/s from first batch to last commit")
        started = time.perf_counter()
        subprocess.run(
            [*SHOPSTREAM, "batch", "customers"], env=env, check=True, capture_output=True
        )
        print(f"batch customers: {time.perf_counter() - started:.1f} s")
        time_queries(url, args.runs)


def time_queries(url: str, runs: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
        row = conn.execute(
            "SELECT max(window_start) + interval '1 minute', count(*) FROM realtime_metrics"
        ).fetchone()
        events = conn.execute("SELECT count(*) FROM events").fetchone()
        sessions = conn.execute("SELECT count(*) FROM user_sessions").fetchone()
        assert row is not None and events is not None and sessions is not None
        newest, minutes = row
        print(
            f"store: {events[0]:,} events, {sessions[0]:,} sessions, "
            f"{minutes:,} realtime_metrics rows; newest minute {newest:%Y-%m-%d %H:%M}"
        )
        rng = random.Random(7)
        hour, day = timedelta(hours=1), timedelta(days=1)

        def end() -> datetime:  # a window ending within the newest week of data
            return newest - timedelta(minutes=rng.randrange(0, 7 * 24 * 60))  # type: ignore[no-any-return]

        queries: dict[str, Callable[[], Any]] = {
            "KPIs, last hour": lambda: dashboard.kpis(conn, (e := end()) - hour, e),
            "KPIs, last day": lambda: dashboard.kpis(conn, (e := end()) - day, e),
            "revenue per minute, one day": lambda: dashboard.revenue_series(
                conn, (e := end()) - day, e
            ),
            "top 10 products, 7 days": lambda: dashboard.top_products(
                conn, (e := end().date()) - 6 * day, e
            ),
            "funnel by category, 7 days": lambda: dashboard.funnel(
                conn, (e := end().date()) - 6 * day, e
            ),
            "RFM segment sizes": lambda: dashboard.segment_sizes(conn),
        }
        print(
            f"\n{'query':<30} {'rows':>5} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}"
            "  goal p95 <= 50 ms"
        )
        for name, query in queries.items():
            for _ in range(3):
                answer = query()
            rows = len(answer) if isinstance(answer, list) else 1
            timings = []
            for _ in range(runs):
                started = time.perf_counter()
                query()
                timings.append((time.perf_counter() - started) * 1000)
            p95 = statistics.quantiles(timings, n=20)[-1]
            verdict = "met" if p95 <= GOAL_P95_MS else "MISSED"
            print(
                f"{name:<30} {rows:5d} {statistics.median(timings):8.1f} {p95:8.1f} "
                f"{max(timings):8.1f}  {verdict}"
            )


if __name__ == "__main__":
    main()
