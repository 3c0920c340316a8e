"""Spark benchmark: a seed-style Structured Streaming job (``readStream.csv`` ->
``dropDuplicates(event_id)`` -> ``foreachBatch`` JDBC append) with default and with tuned
shuffle partitions, next to ShopStream's Spark engine and its embedded engine, on the same
1,000,000 events.

    .venv/bin/python bench/spark.py [--events 1000000] [--master local[*]]

The seed-style job needs PostgreSQL's JDBC driver: Debian's ``libpostgresql-jdbc-java``
(/usr/share/java/postgresql.jar), or ``--jdbc-jar PATH``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import psycopg

from common import SHOPSTREAM, committed_window, env_for, fresh_database, workspace
from shopstream.engines.spark.session import spark_session

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the tests' cluster launcher
from tests.fixtures.spark import start_cluster

# Every timed job gets this database anew, so the one before it is dropped first: its
# autovacuum (a million rows just inserted) never runs into the next job's time.
JOB_DATABASE = "bench_job"
# Text ids: with uuid, the first malformed id aborts the whole JDBC batch and the query.
SEED_TABLE = """CREATE TABLE events_seed (
    event_id text PRIMARY KEY, event_type text, product_id text, user_id text,
    event_timestamp timestamptz, quantity integer, price numeric(10,2))"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--master", default="local[*]")
    parser.add_argument("--jdbc-jar", default="/usr/share/java/postgresql.jar")
    parser.add_argument(
        "--cluster",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run on a two-worker standalone cluster on loopback",
    )
    parser.add_argument(
        "--seed-job", nargs=4, metavar=("URL", "INBOX", "CHECKPOINT", "PARTITIONS"),
        help=argparse.SUPPRESS,  # one seed-style run, in the process seed_style starts
    )  # fmt: skip
    parser.add_argument("--parse-paths", metavar="INBOX", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.seed_job is not None:
        url, inbox, checkpoint, partitions = args.seed_job
        seed_job(url, inbox, checkpoint, int(partitions), args.master, args.jdbc_jar)
        return
    if args.parse_paths is not None:
        print(json.dumps(parse_paths(Path(args.parse_paths), args.master)))
        return
    with workspace("shopstream-bench-spark-") as (work, base_url):
        inbox = work / "in"
        env = env_for(fresh_database(base_url, "bench_gen"), work / "gen")
        subprocess.run(
            [*SHOPSTREAM, "generate", "--out", str(inbox), "--events", str(args.events),
             "--seed", "5", "--dirty", "0.01", "--duplicates", "0.02", "--file-rows", "50000"],
            env=env, check=True, capture_output=True,
        )  # fmt: skip
        files = sorted(inbox.glob("*.csv"))
        rows = sum(path.read_bytes().count(b"\n") - 1 for path in files)  # minus headers
        print(f"{rows:,} input rows in {len(files)} files, master {args.master}")
        figures: dict[str, float] = {}
        shuffles = {
            "seed-style, 200 shuffle partitions": 200,
            "seed-style, tuned shuffle partitions": os.cpu_count() or 2,
        }
        steady: dict[str, float] = {}
        startup: dict[str, float] = {}
        for name, partitions in shuffles.items():
            url = fresh_database(base_url, JOB_DATABASE)
            seconds, steady[name], startup[name] = seed_style(
                url, inbox, work / f"ckpt-{partitions}", args, args.master, partitions, rows
            )
            figures[name] = rows / seconds
        # In a process of its own, as every job here: a JVM this process kept would stay
        # resident (its heap and threads) through the timed jobs that follow.
        done = subprocess.run(
            [sys.executable, __file__, "--master", args.master, "--parse-paths", str(inbox)],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        parsers: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
        # ShopStream by default (micro-batches bounded by input bytes: one here) and as the
        # seeds configure their job (ten files per trigger); on the cluster also with
        # ShopStream installed on the workers (a container image) instead of the packed
        # environment that each executor unpacks. The local jobs run before the cluster
        # starts, as the local seed-style jobs did: its idle daemons are no one's load.
        ten_files = ("--max-files-per-trigger", "10")
        variants: list[tuple[str, tuple[str, ...]]] = [
            ("", ()),
            (", ten files per trigger", ten_files),
        ]

        def shopstream_spark(suffix: str, master: str, extra: tuple[str, ...],
                             environment: Path | None) -> None:  # fmt: skip
            for rollups in ("true", "false"):
                name = f"ShopStream, Spark{suffix}" + (
                    ", rollups off" if rollups == "false" else ""
                )
                seconds, steady[name], startup[name] = shopstream_run(
                    base_url, work / f"run{len(figures)}", inbox, "spark", rollups, master,
                    environment, extra,
                )  # fmt: skip
                figures[name] = rows / seconds

        for suffix, extra in variants:
            shopstream_spark(suffix, args.master, extra, None)
        if args.cluster:
            archive = work / "shopstream_env.tar.gz"
            subprocess.run([*SHOPSTREAM, "spark", "package", str(archive)], env=env, check=True,
                           capture_output=True)  # fmt: skip
            cluster = start_cluster(work / "cluster", archive)
            try:
                # The seed-style job on the same cluster (its executors run no Python).
                name = "seed-style, tuned shuffle partitions, 2-worker cluster"
                seconds, steady[name], startup[name] = seed_style(
                    fresh_database(base_url, JOB_DATABASE), inbox, work / "ckpt-cluster", args,
                    cluster.master_url, 2, rows,
                )  # fmt: skip
                figures[name] = rows / seconds
                for suffix, extra in variants:
                    shopstream_spark(f", 2-worker cluster{suffix}", cluster.master_url, extra,
                                     cluster.environment)  # fmt: skip
                shopstream_spark(", 2-worker cluster, Python installed on workers",
                                 cluster.master_url, (), None)  # fmt: skip
            finally:
                cluster.stop()
        for rollups in ("true", "false"):
            name = "ShopStream, embedded" + (", rollups off" if rollups == "false" else "")
            seconds, steady[name], startup[name] = shopstream_run(
                base_url, work / f"run{len(figures)}", inbox, "embedded", rollups, "", None, ()
            )
            figures[name] = rows / seconds
        print(f"\n{'job':<64} {'events/s':>10} {'steady ev/s':>12} {'start-up s':>11}")
        for name, rate in figures.items():
            apart = f"{steady[name]:12,.0f} {startup[name]:11.1f}" if name in steady else ""
            print(f"{name:<64} {rate:10,.0f} {apart}")
        print("(events/s: wall clock, JVM and session start-up included; steady: from the first"
              " batch's start to the last commit)")  # fmt: skip
        tuned = figures["seed-style, tuned shuffle partitions"]
        for name, rate in figures.items():
            if name.startswith("ShopStream, Spark"):
                place = ", 2-worker cluster" if "cluster" in name else ""
                goal = 1.0 if "rollups off" in name else 0.7
                reference = figures[f"seed-style, tuned shuffle partitions{place}"]
                print(f"{name} / tuned seed-style job{place}: {rate / reference:.2f}"
                      f" (goal >= {goal})")  # fmt: skip
        print(f"tuned / default shuffle partitions: {tuned / figures[next(iter(figures))]:.2f}")
        print("\nparsing alone (rows/s, the same files, one session, counted not loaded):")
        for name, seconds in parsers.items():
            print(f"  {name:<58} {rows / seconds:10,.0f}")


def parse_paths(inbox: Path, master: str) -> dict[str, float]:
    """Seconds to parse every file: Spark's CSV reader with an explicit schema (malformed
    rows kept in a corrupt-record column) against the shared parser on executors."""
    from pyspark.sql import functions as sf

    from shopstream.engines.spark.parse import parse_files, spark_ddl

    spark = spark_session(master, "parse-paths")
    schema = (
        "event_id STRING, event_type STRING, product_id STRING, user_id STRING,"
        " event_timestamp STRING, session_id STRING, category STRING, price STRING,"
        " quantity STRING, _corrupt STRING"
    )
    timings = {}
    for attempt in ("warm-up", "measured"):
        started = time.perf_counter()
        frame = (
            spark.read.option("header", "true").option("mode", "PERMISSIVE")
            .option("columnNameOfCorruptRecord", "_corrupt").schema(schema).csv(str(inbox))
            .select("*", sf.try_to_timestamp("event_timestamp").alias("ts"),
                    sf.col("price").try_cast("decimal(10,2)").alias("amount"))
        )  # fmt: skip
        frame.agg(sf.count("*"), sf.count("ts"), sf.sum("amount")).collect()
        timings["Spark's CSV reader, explicit schema, typed"] = time.perf_counter() - started
        started = time.perf_counter()
        parsed = (
            spark.read.format("binaryFile").load(str(inbox)).select("path", "content")
            .mapInArrow(parse_files, spark_ddl())
        )  # fmt: skip
        parsed.agg(sf.count("*")).collect()
        timings["shared parser on executors (mapInArrow), typed + raw lines"] = (
            time.perf_counter() - started
        )
        if attempt == "warm-up":
            timings.clear()
    spark.stop()
    return timings


def shopstream_run(
    base_url: str,
    work: Path,
    inbox: Path,
    engine: str,
    rollups: str,
    master: str,
    environment: Path | None,
    extra: tuple[str, ...],
) -> tuple[float, float, float]:
    """One ``shopstream run`` over the inbox: wall seconds, steady events/s and start-up
    seconds (process start to the first batch's start). On a cluster, executors unpack
    ``environment``, or (None) run this Python, as from an image with ShopStream."""
    url = fresh_database(base_url, JOB_DATABASE)
    run_env = env_for(url, work / "home")
    run_env["SHOPSTREAM_ROLLUPS"] = rollups
    run_env["SHOPSTREAM_FRAUD"] = rollups  # "rollups off": no derived work at all, as the seed job
    command = [*SHOPSTREAM, "run", "--source", str(inbox), "--until-idle"]
    if engine == "spark":
        command += ["--engine", "spark", "--master", master, *extra]
        if master.startswith("spark://"):
            run_env["SHOPSTREAM_SPARK_EXECUTOR_MEMORY"] = "1g"
            if environment is not None:
                run_env["SHOPSTREAM_SPARK_ENVIRONMENT"] = str(environment)
            else:
                run_env["PYSPARK_PYTHON"] = sys.executable
    subprocess.run([*SHOPSTREAM, "db", "migrate"], env=run_env, check=True)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CHECKPOINT")  # no job pays for the writes of the one before it
    began = time.time()
    started = time.perf_counter()
    subprocess.run(command, env=run_env, check=True, capture_output=True)
    seconds = time.perf_counter() - started
    read, window = committed_window(url)
    with psycopg.connect(url) as conn:
        first = conn.execute(
            "SELECT extract(epoch FROM min(started_at)), sum(parse_ms) / 1000,"
            " sum(load_ms) / 1000, count(*) FROM batches"
        ).fetchone()
    assert first is not None
    print(f"  {engine} {master or ''} rollups {rollups}: {first[3]} batches, parse/stage"
          f" {first[1]:.1f} s, commit {first[2]:.1f} s, wall {seconds:.1f} s")  # fmt: skip
    return seconds, read / window, float(first[0]) - began


def seed_style(
    url: str,
    inbox: Path,
    checkpoint: Path,
    args: argparse.Namespace,
    master: str,
    partitions: int,
    rows: int,
) -> tuple[float, float, float]:
    """The seed-style job in a process of its own, as ShopStream runs (its JVM starts inside
    the timing: a second session in one Python process would reuse the first one's JVM):
    wall seconds, steady events/s and start-up seconds, as for ShopStream."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(SEED_TABLE)
        conn.execute("CHECKPOINT")  # no job pays for the writes of the one before it
    command = [sys.executable, __file__, "--master", master, "--jdbc-jar", args.jdbc_jar,
               "--seed-job", url, str(inbox), str(checkpoint), str(partitions)]  # fmt: skip
    began = time.time()
    started = time.perf_counter()
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    first_batch, last_write = json.loads(done.stdout.strip().splitlines()[-1])
    return seconds, rows / (last_write - first_batch), first_batch - began


def seed_job(url: str, inbox: str, checkpoint: str, partitions: int, master: str, jar: str) -> None:
    """The original design: CSV stream, stateful dropDuplicates, JDBC row inserts."""
    parts = urlsplit(url)
    jdbc = f"jdbc:postgresql://{parts.hostname}:{parts.port}{parts.path}?stringtype=unspecified"
    properties = {"user": parts.username or "", "password": parts.password or "",
                  "driver": "org.postgresql.Driver"}  # fmt: skip
    os.environ["PYSPARK_SUBMIT_ARGS"] = f"--jars {jar} pyspark-shell"
    spark = spark_session(master, "seed-style")
    spark.conf.set("spark.sql.shuffle.partitions", str(partitions))
    stream = (
        spark.readStream.option("header", "true")
        .schema(
            "event_id STRING, event_type STRING, product_id STRING, user_id STRING, "
            "event_timestamp TIMESTAMP, quantity INT, price DECIMAL(10,2)"
        )
        .csv(inbox)
        .dropna(subset=["event_id", "event_type", "event_timestamp"])
        .dropDuplicates(["event_id"])
    )

    moments: list[float] = []

    def append(frame, _batch_id):  # type: ignore[no-untyped-def]
        moments.append(time.time())
        frame.write.jdbc(jdbc, "events_seed", mode="append", properties=properties)
        moments.append(time.time())

    query = (
        stream.writeStream.foreachBatch(append)
        .option("checkpointLocation", checkpoint)
        .trigger(availableNow=True)
        .start()
    )
    query.awaitTermination()
    spark.stop()
    print(json.dumps([moments[0], moments[-1]]))  # first batch's start, last write's end


if __name__ == "__main__":
    main()
