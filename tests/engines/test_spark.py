"""The Spark engine (local[2]) against the embedded engine on the same dirty input."""

from __future__ import annotations

import random
import shutil
import time
from pathlib import Path

import psycopg
import pytest

from shopstream.store.server import EmbeddedPostgres
from tests.fixtures.analytics import assert_rollups_match_events
from tests.fixtures.cli import cli_env, shopstream, start_shopstream
from tests.fixtures.counts import data_rows, outcome
from tests.fixtures.postgres import fresh_database
from tests.fixtures.snapshots import TABLES, snapshot
from tests.fixtures.spark import requires_java

pytestmark = requires_java
SPARK = ("--engine", "spark", "--master", "local[2]")


@pytest.mark.slow
def test_spark_and_embedded_load_the_same_rows_quarantine_and_rollups(
    tmp_path: Path, database_url: str, pg_server: EmbeddedPostgres
) -> None:
    inbox = tmp_path / "in"
    generate = ("generate", "--out", str(inbox), "--events", "30000", "--seed", "21",
                "--format", "canonical", "--dirty", "0.03", "--duplicates", "0.03",
                "--late", "0.03", "--file-rows", "4000")  # fmt: skip
    embedded_env = cli_env(database_url, tmp_path / "embedded")
    shopstream(*generate, env=embedded_env)
    (inbox / "broken.csv.gz").write_bytes(b"\x1f\x8bnot gzip at all")  # a whole-file rejection
    spark_url = fresh_database(pg_server, "spark")
    spark_env = cli_env(spark_url, tmp_path / "spark")

    shopstream("run", "--source", str(inbox), "--until-idle", env=embedded_env)
    # Stored events sent again with a time in another month (another partition of
    # events): the key is global, so both engines count them as duplicates in the store.
    with psycopg.connect(database_url) as conn:
        stored = [str(r[0]) for r in conn.execute("SELECT event_id FROM events LIMIT 3")]
    (inbox / "zz_resent.csv").write_text(
        "event_id,event_type,product_id,user_id,event_timestamp\n"
        + "".join(f"{event_id},page_view,,u1,2020-06-15T10:00:00Z\n" for event_id in stored)
    )
    shopstream("run", "--source", str(inbox), "--until-idle", env=embedded_env)
    with psycopg.connect(database_url) as conn:
        last = conn.execute(
            "SELECT rows_read, duplicates_in_store FROM batches ORDER BY batch_id DESC LIMIT 1"
        ).fetchone()
    assert last == (3, 3)
    shopstream("run", "--source", str(inbox), "--until-idle", *SPARK, env=spark_env)

    embedded, spark = outcome(database_url), outcome(spark_url)
    assert embedded.quarantined > 0 and embedded.duplicates > 0
    for url in (database_url, spark_url):
        with psycopg.connect(url) as conn:
            resent = conn.execute(
                "SELECT count(*) FROM events WHERE event_id = ANY(%s::uuid[])"
                " AND event_timestamp < '2021-01-01'",
                (stored,),
            ).fetchone()
        assert resent == (0,), url
    assert (spark.read, spark.loaded, spark.duplicates, spark.quarantined, spark.ids_digest) == (
        embedded.read, embedded.loaded, embedded.duplicates, embedded.quarantined,
        embedded.ids_digest,
    )  # fmt: skip
    mine, theirs = snapshot(spark_url), snapshot(database_url)
    for name in TABLES:
        assert mine[name] == theirs[name], name
    assert_rollups_match_events(spark_url)

    shopstream("run", "--source", str(inbox), "--until-idle", *SPARK, env=spark_env)
    assert outcome(spark_url) == spark  # the checkpoint knows every file: nothing again

    shutil.rmtree(tmp_path / "spark" / "spark")  # a new checkpoint lists every file again
    shopstream("run", "--source", str(inbox), "--until-idle", *SPARK, env=spark_env)
    assert outcome(spark_url) == spark  # the ledger keeps them out


@pytest.mark.slow
def test_killing_the_spark_driver_loses_and_duplicates_nothing(
    tmp_path: Path, database_url: str, pg_server: EmbeddedPostgres
) -> None:
    inbox = tmp_path / "in"
    reference_url = fresh_database(pg_server, "reference")
    reference_env = cli_env(reference_url, tmp_path / "reference")
    shopstream("generate", "--out", str(inbox), "--events", "40000", "--seed", "8",
               "--dirty", "0.02", "--duplicates", "0.05", "--file-rows", "2000",
               env=reference_env)  # fmt: skip
    shopstream("run", "--source", str(inbox), "--until-idle", env=reference_env)
    reference = outcome(reference_url)

    env = cli_env(database_url, tmp_path / "home")
    shopstream("db", "migrate", env=env)
    args = ("run", "--source", str(inbox), "--until-idle", *SPARK, "--max-files-per-trigger", "2")
    driver = start_shopstream(*args, env=env)
    deadline = time.monotonic() + 120
    while outcome(database_url).read == 0:
        assert driver.poll() is None, driver.communicate()
        assert time.monotonic() < deadline, "no batch within 120 s"
        time.sleep(0.2)
    time.sleep(random.Random(3).uniform(0.0, 1.5))
    driver.kill()  # SIGKILL: no chance to finish the batch or the checkpoint
    driver.communicate()
    partial = outcome(database_url).read
    assert 0 < partial < reference.read

    shopstream(*args, env=env)
    assert outcome(database_url) == reference
    assert_rollups_match_events(database_url)


FRAUD_TABLES = {
    "fraud_scores": "SELECT event_id, order_id, user_id, event_type, amount, score, reasons,"
    " model_version, features::text FROM fraud_scores",
    "fraud_alerts": "SELECT event_id, user_id, score, reasons, status FROM fraud_alerts",
}


@pytest.mark.slow
def test_spark_scores_fraud_like_the_embedded_engine(
    tmp_path: Path, database_url: str, pg_server: EmbeddedPostgres
) -> None:
    inbox = tmp_path / "in"
    embedded_env = cli_env(database_url, tmp_path / "embedded")
    shopstream("generate", "--out", str(inbox), "--events", "20000", "--seed", "31",
               "--format", "canonical", "--fraud", "0.03", "--file-rows", "4000",
               env=embedded_env)  # fmt: skip
    spark_url = fresh_database(pg_server, "spark_fraud")
    shopstream("run", "--source", str(inbox), "--until-idle", env=embedded_env)
    shopstream("run", "--source", str(inbox), "--until-idle", *SPARK,
               env=cli_env(spark_url, tmp_path / "spark"))  # fmt: skip
    for name, query in FRAUD_TABLES.items():
        with psycopg.connect(database_url) as mine, psycopg.connect(spark_url) as theirs:
            embedded = sorted(mine.execute(query).fetchall(), key=repr)
            spark = sorted(theirs.execute(query).fetchall(), key=repr)
        assert embedded and embedded == spark, name


@pytest.mark.slow
def test_a_million_row_micro_batch_fits_a_one_gigabyte_driver(
    tmp_path: Path, database_url: str
) -> None:
    """No row reaches the driver's JVM: a batch of every file at once, 1 GB of heap."""
    inbox = tmp_path / "in"
    env = cli_env(database_url, tmp_path / "home", SHOPSTREAM_SPARK_DRIVER_MEMORY="1g")
    shopstream("generate", "--out", str(inbox), "--events", "1000000", "--seed", "4",
               "--file-rows", "100000", env=env, timeout=600)  # fmt: skip
    shopstream("run", "--source", str(inbox), "--until-idle", *SPARK,
               "--max-files-per-trigger", "100", env=env, timeout=900)  # fmt: skip
    with psycopg.connect(database_url) as conn:
        batches = conn.execute("SELECT count(*), sum(rows_read) FROM batches").fetchone()
    assert batches == (1, data_rows(str(inbox)))
    loaded = outcome(database_url)
    assert loaded.loaded == loaded.events >= 900_000
