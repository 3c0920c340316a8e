"""Fraud benchmark: precision and recall of alerts against the generator's ground truth,
ingest rate with scoring on vs off (side by side), and landing-to-scored latency.

    .venv/bin/python bench/fraud.py [--events 1000000] [--fraud 0.005] [--trials 2]

Uses SHOPSTREAM_DATABASE_URL when set, otherwise a private PostgreSQL it starts itself.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
from pathlib import Path

import psycopg

from common import SHOPSTREAM, env_for, fresh_database, landing_to_commit, workspace
from ingest import timed_run
from shopstream.analytics.fraud import evaluate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--fraud", type=float, default=0.005)
    parser.add_argument("--trials", type=int, default=2)
    parser.add_argument("--latency-rate", type=float, default=10_000.0)
    parser.add_argument("--latency-seconds", type=float, default=20.0)
    args = parser.parse_args()
    with workspace("shopstream-fraud-") as (work, base_url):
        inbox = work / "in"
        labels = work / "labels.csv"
        subprocess.run(
            [*SHOPSTREAM, "generate", "--out", str(inbox), "--events", str(args.events),
             "--seed", "7", "--format", "canonical", "--fraud", str(args.fraud),
             "--fraud-labels", str(labels), "--file-rows", "10000"],
            env=env_for(base_url, work / "home"), check=True, capture_output=True,
        )  # fmt: skip
        scored_url = throughput(args, work, base_url, inbox)
        print("-- rules only")
        quality(scored_url, labels)
        print("-- rules and the Isolation Forest (trained on the first half, scoring the rest)")
        quality(with_model(work, base_url, inbox), labels)
        latency(args, work, base_url)


def throughput(args: argparse.Namespace, work: Path, base_url: str, inbox: Path) -> str:
    """Ingest with scoring off and on (rollups on in both), interleaved; the last scored
    database is kept for the quality figures."""
    seconds: dict[str, list[float]] = {"off": [], "on": []}
    rows = 0
    url = ""
    for _ in range(args.trials):
        for mode in ("off", "on"):
            url = fresh_database(base_url, f"bench_fraud_{mode}")
            env = {**env_for(url, work / "home"), "SHOPSTREAM_FRAUD": str(mode == "on").lower()}
            seconds[mode].append(timed_run(inbox, env).seconds)
            with psycopg.connect(url) as conn:
                rows = int(conn.execute("SELECT sum(rows_read) FROM batches").fetchone()[0])  # type: ignore[index]
    off, on = (rows / statistics.median(seconds[m]) for m in ("off", "on"))
    print(f"input rows {rows:,}; {args.trials} interleaved trials, rollups on")
    print(f"ingest, scoring off            {off:>12,.0f} events/s (median)")
    print(f"ingest, scoring on             {on:>12,.0f} events/s (median)")
    print(f"ratio on / off                 {on / off:>12.2f}")
    return url


def with_model(work: Path, base_url: str, inbox: Path) -> str:
    """Load the first half of the files, train the model on them, load the rest."""
    files = sorted(inbox.iterdir())
    halves = [work / "first-half", work / "second-half"]
    for half, part in zip(
        halves, (files[: len(files) // 2], files[len(files) // 2 :]), strict=True
    ):
        half.mkdir()
        for path in part:
            shutil.copy2(path, half / path.name)
    url = fresh_database(base_url, "bench_fraud_model")
    env = env_for(url, work / "home")
    run = [*SHOPSTREAM, "run", "--until-idle", "--source"]
    subprocess.run([*run, str(halves[0])], env=env, check=True, capture_output=True)
    trained = subprocess.run(
        [*SHOPSTREAM, "fraud", "train", "--contamination", "0.01"],
        env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip
    print(trained.stdout.strip())
    subprocess.run([*run, str(halves[1])], env=env, check=True, capture_output=True)
    return url


def quality(url: str, labels: Path) -> None:
    """Alerts against the ground truth: recall per pattern, precision and recall overall."""
    with psycopg.connect(url) as conn:
        result = evaluate(conn, labels.read_bytes())
        scored = conn.execute("SELECT count(*) FROM fraud_scores").fetchone()
    print(
        f"orders scored {scored[0] if scored else 0:,}; labelled fraud {result.labelled:,};"
        f" alerts {result.alerts:,}"
    )
    print(f"{'pattern':22}{'labelled':>10}{'alerted':>10}{'recall':>10}")
    for pattern, count, hit in result.by_pattern:
        print(f"{pattern:22}{count:>10,}{hit:>10,}{hit / count:>10.2f}")
    print(f"overall: precision {result.precision or 0:.2f}, recall {result.recall or 0:.2f}")
    print("false alerts by reason: " + ", ".join(f"{r} {n:,}" for r, n in result.false_by_reason))


def latency(args: argparse.Namespace, work: Path, base_url: str) -> None:
    """Live traffic with scoring on: file landing -> its orders scored and committed (in
    their batch's transaction, so when its rows commit)."""
    url = fresh_database(base_url, "bench_fraud_live")
    waits = landing_to_commit(url, work, rate=args.latency_rate, seconds=args.latency_seconds,
                              extra=("--format", "canonical"))  # fmt: skip
    with psycopg.connect(url) as conn:
        scored = conn.execute("SELECT count(*) FROM fraud_scores").fetchone()
    p50, p99 = waits[len(waits) // 2] * 1000, waits[int(len(waits) * 0.99)] * 1000
    orders = scored[0] if scored else 0
    print(
        f"latency @ {args.latency_rate:,.0f} ev/s, scoring on: p50 {p50:,.0f} ms, p99 {p99:,.0f}"
        f" ms (file landing -> order scored and committed; {len(waits):,} rows, {orders:,}"
        " orders scored)"
    )


if __name__ == "__main__":
    main()
