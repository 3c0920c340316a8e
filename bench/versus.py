"""Ingest rate of this checkout against another revision, side by side on the same files.

    .venv/bin/python bench/versus.py --rev 14dcddb [--events 1000000] [--trials 3]

Checks the revision out in a scratch worktree, generates one input with this checkout's
generator, and runs ``run --until-idle`` from each (rollups off and on) into fresh
databases, interleaved, so a noisy neighbour weighs on both alike.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import psycopg

from common import SHOPSTREAM, env_for, fresh_database, workspace
from ingest import timed_run

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rev", required=True, help="the revision to compare with")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument(
        "--setting", action="append", default=[], metavar="SHOPSTREAM_X=VALUE",
        help="a setting for both sides' runs (repeatable)",
    )  # fmt: skip
    args = parser.parse_args()
    with workspace("shopstream-versus-") as (work, base_url):
        other = work / "other"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(other), args.rev],
            check=True, capture_output=True,
        )  # fmt: skip
        try:
            compare(args, work, base_url, other)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(other)],
                           check=False, capture_output=True)  # fmt: skip
            shutil.rmtree(other, ignore_errors=True)


def compare(args: argparse.Namespace, work: Path, base_url: str, other: Path) -> None:
    inbox = work / "in"
    subprocess.run(
        [*SHOPSTREAM, "generate", "--out", str(inbox), "--events", str(args.events),
         "--seed", "1", "--dirty", "0.01", "--duplicates", "0.02", "--file-rows", "10000"],
        env=env_for(base_url, work / "home"), check=True, capture_output=True,
    )  # fmt: skip
    sources = {"this checkout": ROOT / "src", args.rev: other / "src"}
    seconds: dict[tuple[str, bool], list[float]] = {}
    rows = 0
    for _ in range(args.trials):
        for label, src in sources.items():
            for rollups in (False, True):
                url = fresh_database(base_url, "bench_versus")
                env = {
                    **env_for(url, work / "home"),
                    "PYTHONPATH": f"{src}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
                    "SHOPSTREAM_ROLLUPS": str(rollups).lower(),
                    **dict(setting.split("=", 1) for setting in args.setting),
                }
                seconds.setdefault((label, rollups), []).append(timed_run(inbox, env).seconds)
                with psycopg.connect(url) as conn:
                    rows = int(conn.execute("SELECT sum(rows_read) FROM batches").fetchone()[0])  # type: ignore[index]
    print(f"input rows {rows:,}; {args.trials} interleaved trials; python {sys.version.split()[0]}")
    print(f"{'':24}{'rollups off':>14}{'rollups on':>14}   (median events/s)")
    medians = {key: rows / statistics.median(value) for key, value in seconds.items()}
    for label in sources:
        print(f"{label:24}{medians[(label, False)]:>14,.0f}{medians[(label, True)]:>14,.0f}")
    this, that = "this checkout", args.rev
    print(
        f"{'ratio':24}{medians[(this, False)] / medians[(that, False)]:>14.2f}"
        f"{medians[(this, True)] / medians[(that, True)]:>14.2f}"
    )


if __name__ == "__main__":
    main()
