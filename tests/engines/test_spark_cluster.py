"""The Spark engine on a real standalone cluster on loopback: a master and two workers
started from the installed pyspark, executors running the environment `shopstream spark
package` packed (never the driver's), killed workers and drivers, exact counts."""

from __future__ import annotations

import os
import signal
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from shopstream.store.server import EmbeddedPostgres
from tests.fixtures.analytics import assert_rollups_match_events
from tests.fixtures.cli import cli_env, shopstream, start_shopstream
from tests.fixtures.counts import Outcome, outcome
from tests.fixtures.postgres import fresh_database
from tests.fixtures.snapshots import TABLES, snapshot
from tests.fixtures.spark import SparkCluster, requires_java, start_cluster

pytestmark = [requires_java, pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkCluster]:
    root = tmp_path_factory.mktemp("spark-cluster")
    archive = root / "shopstream_env.tar.gz"
    packed = shopstream("spark", "package", str(archive), env=cli_env(None, root / "home"))
    assert "polars==" in packed.stdout and archive.stat().st_size > 0
    assert_compiled(archive)
    running = start_cluster(root, archive)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def dirty_inbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Dirty input, and the embedded engine's outcome of it as the reference."""
    root = tmp_path_factory.mktemp("cluster-input")
    inbox = root / "in"
    shopstream("generate", "--out", str(inbox), "--events", "24000", "--seed", "17",
               "--format", "canonical", "--dirty", "0.03", "--duplicates", "0.04",
               "--file-rows", "2000", env=cli_env(None, root / "gen"))  # fmt: skip
    (inbox / "broken.csv.gz").write_bytes(b"\x1f\x8bnot gzip at all")
    return inbox


@pytest.fixture(scope="module")
def reference(
    dirty_inbox: Path, pg_server: EmbeddedPostgres, tmp_path_factory: pytest.TempPathFactory
) -> str:
    url = fresh_database(pg_server, "cluster_reference")
    env = cli_env(url, tmp_path_factory.mktemp("reference"))
    shopstream("run", "--source", str(dirty_inbox), "--until-idle", env=env)
    return url


def assert_compiled(archive: Path) -> None:
    """Every module ships its bytecode, so no executor compiles one before its first row."""
    with tarfile.open(archive) as packed:
        names = set(packed.getnames())
    sources = [name for name in names if name.endswith(".py") and "/shopstream/" in name]
    assert sources
    tag = sys.implementation.cache_tag
    missing = [
        source for source in sources
        if str(Path(source).parent / "__pycache__" / f"{Path(source).stem}.{tag}.pyc") not in names
    ]  # fmt: skip
    assert not missing


def _spark_env(url: str, home: Path, cluster: SparkCluster) -> dict[str, str]:
    env = cli_env(
        url, home,
        SHOPSTREAM_SPARK_ENVIRONMENT=str(cluster.environment),
        SHOPSTREAM_SPARK_EXECUTOR_MEMORY="1g",
        SHOPSTREAM_SPARK_DRIVER_MEMORY="1g",
    )  # fmt: skip
    env.pop("PYSPARK_PYTHON", None)
    return env


def _migrated(
    pg_server: EmbeddedPostgres, name: str, tmp_path: Path, cluster: SparkCluster
) -> tuple[str, dict[str, str]]:
    """A fresh, migrated database and the environment of a Spark run on the cluster."""
    url = fresh_database(pg_server, name)
    env = _spark_env(url, tmp_path / "home", cluster)
    shopstream("db", "migrate", env=env)
    return url, env


def _run_args(inbox: Path, cluster: SparkCluster, *extra: str) -> tuple[str, ...]:
    return ("run", "--source", str(inbox), "--until-idle", "--engine", "spark",
            "--master", cluster.master_url, *extra)  # fmt: skip


def _staging_tables(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'shopstream_staging'"
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_the_cluster_loads_what_the_embedded_engine_loads_with_the_packed_python(
    cluster: SparkCluster,
    dirty_inbox: Path,
    reference: str,
    pg_server: EmbeddedPostgres,
    tmp_path: Path,
) -> None:
    url = fresh_database(pg_server, "cluster_parity")
    shopstream(*_run_args(dirty_inbox, cluster), env=_spark_env(url, tmp_path / "home", cluster))

    mine, theirs = outcome(url), outcome(reference)
    assert theirs.quarantined > 0 and theirs.duplicates > 0
    assert mine == theirs
    spark, embedded = snapshot(url), snapshot(reference)
    for name in TABLES:
        assert spark[name] == embedded[name], name
    assert_rollups_match_events(url)
    assert _staging_tables(url) == 0
    # Each executor unpacked the archive into its own directory and ran its Python.
    unpacked = [p for w in cluster.work_dirs for p in w.glob("app-*/*/shopstream_env/bin/python")]
    assert unpacked, "no executor unpacked the packed environment"


def test_a_batch_that_fails_after_staging_leaves_no_rows_and_its_staging_goes(
    cluster: SparkCluster,
    dirty_inbox: Path,
    reference: str,
    pg_server: EmbeddedPostgres,
    tmp_path: Path,
) -> None:
    database_url, env = _migrated(pg_server, "cluster_staging", tmp_path, cluster)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            """CREATE FUNCTION refuse_events() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN RAISE EXCEPTION 'injected: the merge fails'; END $$"""
        )
        conn.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON events"
            " FOR EACH STATEMENT EXECUTE FUNCTION refuse_events()"
        )
    args = _run_args(dirty_inbox, cluster)

    failed = shopstream(*args, env=env, check=False)
    assert failed.returncode == 1, failed.stderr
    with psycopg.connect(database_url) as conn:
        stored = conn.execute("SELECT count(*) FROM events").fetchone()
    assert stored == (0,) and _staging_tables(database_url) > 0  # staged, never merged

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DROP TRIGGER refuse ON events")
    shopstream(*args, env=env)
    assert outcome(database_url) == outcome(reference)
    assert _staging_tables(database_url) == 0


def test_a_killed_worker_and_a_killed_driver_lose_and_duplicate_nothing(
    cluster: SparkCluster,
    dirty_inbox: Path,
    reference: str,
    pg_server: EmbeddedPostgres,
    tmp_path: Path,
) -> None:
    url, env = _migrated(pg_server, "cluster_faults", tmp_path, cluster)
    args = _run_args(dirty_inbox, cluster, "--max-files-per-trigger", "2")
    expected = outcome(reference)

    driver = start_shopstream(*args, env=env)
    _await_progress(url, driver, above=0)
    victim = cluster.workers[1]
    os.kill(victim.pid, signal.SIGKILL)  # Spark reschedules its tasks on the other worker
    victim.wait()
    _await_progress(url, driver, above=outcome(url).read)
    driver.kill()  # SIGKILL: the batch in flight and the checkpoint are cut short
    driver.communicate()
    assert 0 < outcome(url).read < expected.read

    shopstream(*args, env=env, timeout=600)
    assert outcome(url) == expected
    assert_rollups_match_events(url)
    assert _staging_tables(url) == 0


def _await_progress(url: str, driver: object, above: int, timeout: float = 180) -> Outcome:
    deadline = time.monotonic() + timeout
    while True:
        now = outcome(url)
        if now.read > above:
            return now
        assert driver.poll() is None, driver.communicate()  # type: ignore[attr-defined]
        assert time.monotonic() < deadline, f"no batch past {above} rows within {timeout} s"
        time.sleep(0.2)
