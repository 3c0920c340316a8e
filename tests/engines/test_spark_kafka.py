"""Spark reading Kafka: the official connector's rows go through the same framing, parsing,
rules and loader as the embedded Kafka source (real tansu broker, real PostgreSQL).

Spark's Kafka source (spark-sql-kafka-0-10) is not part of pyspark and cannot be fetched
offline. Without it, the message path is checked on the very rows that source produces
(topic, partition, offset, value, read back from the broker), and the streaming run skips.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from confluent_kafka import Producer

from shopstream.engines.spark.job import SparkJob, batch_loader
from shopstream.engines.spark.session import spark_session
from shopstream.settings import Settings
from shopstream.sources.kafka_topics import ensure_topic
from shopstream.sources.select import KafkaSpec
from shopstream.store.connection import connect
from shopstream.store.loader import Loader
from shopstream.store.migrate import migrate
from shopstream.store.server import EmbeddedPostgres
from shopstream.validation.current import current_rules
from tests.fixtures.cli import cli_env, shopstream
from tests.fixtures.counts import outcome
from tests.fixtures.kafka import read_topic
from tests.fixtures.postgres import fresh_database
from tests.fixtures.snapshots import TABLES, snapshot
from tests.fixtures.spark import requires_java

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

pytestmark = requires_java
CONNECTOR = {k: os.environ[k] for k in ("SHOPSTREAM_SPARK_PACKAGES", "SHOPSTREAM_SPARK_JARS")
             if os.environ.get(k)}  # fmt: skip
NO_CONNECTOR = (
    "Spark's Kafka connector (spark-sql-kafka-0-10) cannot be obtained offline here; set "
    "SHOPSTREAM_SPARK_PACKAGES or SHOPSTREAM_SPARK_JARS to run this test"
)
# The file ledger does not apply to Kafka: positions live in Spark's checkpoint.
COMPARED = [name for name in TABLES if name != "ledger"]


@pytest.fixture(scope="module")
def topic_with_reference(
    kafka_broker: str, pg_server: EmbeddedPostgres, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, str]:
    """A two-partition topic of JSON events with dirt, duplicates and late events, a few
    hand-made bad messages and a seed-CSV one, loaded once by the embedded engine."""
    topic = "spark-events"
    home = tmp_path_factory.mktemp("spark-kafka")
    ensure_topic(kafka_broker, topic, 2)
    shopstream(
        "generate", "--kafka", kafka_broker, "--topic", topic, "--partitions", "2",
        "--events", "6000", "--seed", "4", "--dirty", "0.03", "--duplicates", "0.03",
        "--late", "0.02", env=cli_env(None, home),
    )  # fmt: skip
    producer = Producer({"bootstrap.servers": kafka_broker})
    for value in (
        b"",
        b"\x00\xff binary",
        b'{"event_id": ',
        b"0f8fad5b-d9cb-469f-a165-70867728950e,view,p1,u1,2026-01-01 10:00:00,,",
    ):
        producer.produce(topic, value=value, partition=1)  # fmt: skip
    producer.flush()
    url = fresh_database(pg_server, "kafka_embedded")
    shopstream(
        "run", "--source", f"kafka://{kafka_broker}/{topic}", "--until-idle",
        "--no-dead-letters", env=cli_env(url, home),
    )  # fmt: skip
    return topic, url


@pytest.fixture(scope="module")
def spark() -> Iterator[SparkSession]:
    session = spark_session("local[2]", driver_memory="1g")
    try:
        yield session
    finally:
        session.stop()


def test_kafka_rows_load_in_spark_exactly_as_in_the_embedded_engine(
    topic_with_reference: tuple[str, str],
    kafka_broker: str,
    spark: SparkSession,
    database_url: str,
    tmp_path: Path,
) -> None:
    topic, embedded_url = topic_with_reference
    rows = [
        (m.topic(), m.partition(), m.offset(), m.value())  # type: ignore[attr-defined]
        for m in read_topic(kafka_broker, topic)
    ]
    micro_batch = spark.createDataFrame(
        rows, "topic STRING, partition INT, offset BIGINT, value BINARY"
    ).repartition(3)  # partitions of a topic may arrive split over several tasks
    with connect(database_url) as conn:
        migrate(conn)
    job = SparkJob(KafkaSpec(kafka_broker, [topic]), checkpoints=tmp_path)
    loader = Loader(database_url)
    load = batch_loader(job, loader, current_rules(Settings()), lambda: "static-query")
    load(micro_batch, 0)
    load(micro_batch, 0)  # Spark replays a batch its checkpoint had not marked done
    loader.close()

    embedded, mine = outcome(embedded_url), outcome(database_url)
    assert embedded.quarantined > 100 and embedded.duplicates > 100
    assert mine == embedded
    theirs, ours = snapshot(embedded_url), snapshot(database_url)
    for name in COMPARED:
        assert ours[name] == theirs[name], name


@pytest.mark.skipif(bool(CONNECTOR), reason="the Kafka connector is configured")
def test_without_the_connector_a_kafka_source_stops_with_how_to_add_it(
    database_url: str, tmp_path: Path
) -> None:
    result = shopstream(
        "run", "--engine", "spark", "--master", "local[1]",
        "--source", "kafka://127.0.0.1:9/events", "--until-idle",
        env=cli_env(database_url, tmp_path / "home"), check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    message = " ".join(result.stderr.split())
    assert "spark-sql-kafka-0-10" in message and "SHOPSTREAM_SPARK_PACKAGES" in message


@pytest.mark.slow
@pytest.mark.skipif(not CONNECTOR, reason=NO_CONNECTOR)
def test_spark_streams_a_topic_like_the_embedded_engine(
    topic_with_reference: tuple[str, str], kafka_broker: str, database_url: str, tmp_path: Path
) -> None:
    topic, embedded_url = topic_with_reference
    env = cli_env(database_url, tmp_path / "home", **CONNECTOR)
    args = ("run", "--engine", "spark", "--master", "local[2]",
            "--source", f"kafka://{kafka_broker}/{topic}", "--until-idle")  # fmt: skip
    shopstream(*args, env=env)
    assert outcome(database_url) == outcome(embedded_url)
    theirs, ours = snapshot(embedded_url), snapshot(database_url)
    for name in COMPARED:
        assert ours[name] == theirs[name], name
    shopstream(*args, env=env)  # the checkpoint holds the offsets: nothing again
    assert outcome(database_url) == outcome(embedded_url)
