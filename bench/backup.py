"""Backup and restore at scale: a store of N events (10,000,000 by default) dumped with
``shopstream backup create`` and restored with ``backup restore`` into a fresh database.

    .venv/bin/python bench/backup.py [--events 10000000]

Reports the wall time of each, the dump's size, and the restore rate that bounds the RTO
(a restore is the slowest step of recovering from a lost database). Uses
SHOPSTREAM_DATABASE_URL when set, otherwise a private PostgreSQL it starts itself.
"""

from __future__ import annotations

import argparse
import subprocess
import time
from pathlib import Path

import psycopg

from common import SHOPSTREAM, env_for, fresh_database, workspace


def timed(args: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run([*SHOPSTREAM, *args], env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=10_000_000)
    args = parser.parse_args()
    with workspace("shopstream-bench-backup-") as (work, base):
        url = fresh_database(base, "backup_source")
        env = {**env_for(url, work / "home"), "SHOPSTREAM_LOG_LEVEL": "WARNING",
               "SHOPSTREAM_FRAUD": "false"}  # fmt: skip
        subprocess.run(
            [*SHOPSTREAM, "generate", "--out", str(work / "in"), "--events", str(args.events),
             "--days", "60", "--seed", "5", "--format", "canonical", "--file-rows", "50000"],
            env=env, check=True, capture_output=True,
        )  # fmt: skip
        load = timed(["run", "--source", str(work / "in"), "--until-idle"], env)
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT count(*), pg_database_size(current_database())"
                               " FROM events").fetchone()  # fmt: skip
        assert row is not None
        stored, database_bytes = int(row[0]), int(row[1])
        print(
            f"store: {stored:,} events, {database_bytes / 2**30:.2f} GiB (loaded in {load:.0f} s)"
        )
        backup = timed(["backup", "create", str(work / "b1")], env)
        print(f"backup create   {backup:7.1f} s  {folder_bytes(work / 'b1') / 2**20:,.0f} MiB dump")
        target = fresh_database(base, "backup_target")
        restore = timed(["backup", "restore", str(work / "b1")], env_for(target, work / "home2"))
        print(f"backup restore  {restore:7.1f} s  {stored / restore:,.0f} events/s restored")


if __name__ == "__main__":
    main()
