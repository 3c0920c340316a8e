"""Real clients' events, loaded without code: built-in layouts recognised, mappings for
the rest, the same result through files, Kafka and Spark, and tools to get a mapping right."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest
from confluent_kafka import Producer

from shopstream.store.server import EmbeddedPostgres
from tests.fixtures.analytics import assert_rollups_match_events
from tests.fixtures.cli import cli_env, kill_9_at_random, shopstream
from tests.fixtures.counts import outcome
from tests.fixtures.foreign import (
    STOREFRONT_EVENTS_MAPPING,
    STOREFRONT_TRANSACTIONS_MAPPING,
    jsonl,
    seed_json_events,
    storefront_events,
    storefront_transactions,
    streaming_event_csv,
)
from tests.fixtures.postgres import fresh_database
from tests.fixtures.snapshots import TABLES, snapshot
from tests.fixtures.spark import requires_java


def _accounting(url: str) -> tuple[int, int, int, int, int]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            """SELECT sum(rows_read), sum(rows_loaded),
                      sum(duplicates_in_batch + duplicates_in_store), sum(rows_quarantined),
                      sum(rows_ignored) FROM batches"""
        ).fetchone()
    assert row is not None
    return tuple(int(v or 0) for v in row)  # type: ignore[return-value]


def test_generator_layout_loads_completely_with_no_option(
    tmp_path: Path, database_url: str
) -> None:
    inbox = tmp_path / "in"
    inbox.mkdir()
    for n in range(3):
        (inbox / f"events_{n}.csv").write_bytes(streaming_event_csv(2_000, seed=n))
    env = cli_env(database_url, tmp_path / "home")
    shopstream("run", "--source", str(inbox), "--until-idle", env=env)
    assert _accounting(database_url) == (6_000, 6_000, 0, 0, 0)
    with psycopg.connect(database_url) as conn:
        kinds = dict(conn.execute("SELECT event_type, count(*) FROM events GROUP BY 1").fetchall())
        leaked = conn.execute(
            "SELECT count(*) FROM events WHERE properties ?| array['customer_email',"
            " 'customer_name', 'customer_address'] OR ip_address !~ '^[0-9a-f]{32}$'"
        ).fetchone()
        formats = conn.execute("SELECT DISTINCT input_format FROM ingested_files").fetchall()
    assert set(kinds) == {"view", "order", "add_to_cart", "click", "purchase", "add_to_wishlist"}
    assert leaked == (0,) and formats == [("streaming-event",)]
    assert_rollups_match_events(database_url)


def test_non_product_events_land_join_sessions_and_start_funnels(
    tmp_path: Path, database_url: str
) -> None:
    mapping = tmp_path / "events.toml"
    mapping.write_text(STOREFRONT_EVENTS_MAPPING)
    inbox = tmp_path / "in"
    inbox.mkdir()
    records = storefront_events(3_000, seed=12)
    (inbox / "events.jsonl").write_bytes(jsonl(records))
    env = cli_env(database_url, tmp_path / "home")
    shopstream("run", "--source", str(inbox), "--until-idle", "--mapping", str(mapping), env=env)
    assert _accounting(database_url) == (3_000, 3_000, 0, 0, 0)
    with psycopg.connect(database_url) as conn:
        without_product = conn.execute(
            """SELECT count(*) FROM events WHERE product_id IS NULL
                AND event_type IN ('page_view', 'search', 'login', 'begin_checkout')"""
        ).fetchone()
        # Sessions entered by a page view or a search that went on to view a product.
        entered = conn.execute(
            """SELECT count(*) FROM user_sessions s JOIN events e ON e.event_id = s.entry_event_id
                WHERE e.event_type IN ('page_view', 'search') AND s.views > 0"""
        ).fetchone()
        in_funnel = conn.execute(
            "SELECT sum(sessions), sum(sessions_with_view) FROM funnel_daily"
        ).fetchone()
        sessions = conn.execute("SELECT count(*), sum(events) FROM user_sessions").fetchone()
    assert without_product is not None and without_product[0] > 1_000
    assert entered is not None and entered[0] > 0
    assert sessions == (len({r["session_id"] for r in records}), 3_000)
    assert in_funnel is not None and in_funnel[0] == sessions[0] and in_funnel[1] > 0
    assert_rollups_match_events(database_url)


def test_seed_003_json_stream_loads_completely_from_kafka(
    tmp_path: Path, database_url: str, kafka_broker: str, topic: str
) -> None:
    producer = Producer({"bootstrap.servers": kafka_broker})
    records = seed_json_events(1_500, seed=5)
    for record in records:
        producer.produce(topic, value=json.dumps(record).encode())
    producer.flush()
    env = cli_env(database_url, tmp_path / "home")
    shopstream("run", "--source", f"kafka://{kafka_broker}/{topic}", "--until-idle", env=env)
    assert _accounting(database_url) == (1_500, 1_500, 0, 0, 0)
    with psycopg.connect(database_url) as conn:
        wishlist = conn.execute(
            "SELECT count(*) FROM events WHERE event_type = 'add_to_wishlist'"
        ).fetchone()
        kept = conn.execute(
            "SELECT count(*) FROM events WHERE properties -> 'raw_data' ? 'ab_test'"
        ).fetchone()
    expected = sum(1 for r in records if r["event_type"] == "wishlist_add")
    assert wishlist == (expected,) and kept == (1_500,)


def test_mapped_nested_json_exactly_once_through_files_kafka_and_spark(
    tmp_path: Path, database_url: str, pg_server: EmbeddedPostgres, kafka_broker: str,
    topic: str,
) -> None:  # fmt: skip
    mapping = tmp_path / "transactions.toml"
    mapping.write_text(STOREFRONT_TRANSACTIONS_MAPPING)
    orders = storefront_transactions(1_200, seed=6)
    inbox = tmp_path / "in"
    inbox.mkdir()
    (inbox / "orders.jsonl").write_bytes(jsonl(orders[:600]))
    (inbox / "more.jsonl").write_bytes(jsonl(orders[600:]))
    lines = sum(len(o["products"]) for o in orders)  # type: ignore[arg-type]
    env = cli_env(database_url, tmp_path / "files")
    run = ("run", "--until-idle", "--mapping", str(mapping))
    shopstream(*run, "--source", str(inbox), env=env)
    assert _accounting(database_url) == (lines, lines, 0, 0, 0)
    (inbox / "copy.jsonl").write_bytes(jsonl(orders[:600]))  # the same records again
    shopstream(*run, "--source", str(inbox), env=env)
    files = outcome(database_url)
    assert files.loaded == lines and files.events == lines  # derived ids: all duplicates

    producer = Producer({"bootstrap.servers": kafka_broker})
    for order in orders:
        producer.produce(topic, value=json.dumps(order).encode())
    producer.flush()
    kafka_url = fresh_database(pg_server, "kafka")
    shopstream(*run, "--source", f"kafka://{kafka_broker}/{topic}",
               env=cli_env(kafka_url, tmp_path / "kafka"))  # fmt: skip
    assert outcome(kafka_url).ids_digest == files.ids_digest
    mine, theirs = snapshot(kafka_url), snapshot(database_url)
    for name in ("events", "realtime_metrics", "product_analytics", "customer_metrics"):
        assert mine[name] == theirs[name], name
    assert_rollups_match_events(database_url)


@requires_java
@pytest.mark.slow
def test_spark_applies_the_same_mapping(
    tmp_path: Path, database_url: str, pg_server: EmbeddedPostgres
) -> None:
    mapping = tmp_path / "events.toml"
    mapping.write_text(STOREFRONT_EVENTS_MAPPING)
    events = storefront_events(3_000, seed=7)
    events += [{**events[1], "event_type": "heartbeat", "event_id": "evt_hb"},
               {**events[2], "event_type": "pgae_view", "event_id": "evt_typo"}]  # fmt: skip
    inbox = tmp_path / "in"
    inbox.mkdir()
    (inbox / "a.jsonl").write_bytes(jsonl(events[:1500]))
    (inbox / "b.jsonl").write_bytes(jsonl(events[1500:]))
    run = ("run", "--source", str(inbox), "--until-idle", "--mapping", str(mapping))
    key = {"SHOPSTREAM_PRIVACY_KEY": "one-installation"}
    shopstream(*run, env=cli_env(database_url, tmp_path / "embedded", **key))
    spark_url = fresh_database(pg_server, "spark")
    shopstream(*run, "--engine", "spark", "--master", "local[2]",
               env=cli_env(spark_url, tmp_path / "spark", **key))  # fmt: skip
    assert _accounting(database_url) == (3_002, 3_000, 0, 1, 1)
    assert _accounting(spark_url) == _accounting(database_url)
    mine, theirs = snapshot(spark_url), snapshot(database_url)
    for name in TABLES:
        assert mine[name] == theirs[name], name


def test_replay_through_a_corrected_mapping_twice(tmp_path: Path, database_url: str) -> None:
    wrong = tmp_path / "wrong.toml"
    wrong.write_text(STOREFRONT_EVENTS_MAPPING.replace('complete_checkout = "custom"\n', ""))
    right = tmp_path / "right.toml"
    right.write_text(STOREFRONT_EVENTS_MAPPING)
    events = storefront_events(800, seed=8)
    inbox = tmp_path / "in"
    inbox.mkdir()
    (inbox / "e.jsonl").write_bytes(jsonl(events))
    env = cli_env(database_url, tmp_path / "home")
    shopstream("run", "--source", str(inbox), "--until-idle", "--mapping", str(wrong), env=env)
    stuck = sum(1 for e in events if e["event_type"] == "complete_checkout")
    assert _accounting(database_url) == (800, 800 - stuck, 0, stuck, 0)
    listed = shopstream("quarantine", "list", env=env).stdout
    assert "event_type_known" in listed and "event_type" in listed
    replay = ("quarantine", "replay", "--mapping", str(right))
    first = shopstream(*replay, env=env).stdout
    assert f"loaded {stuck:,}" in first
    assert shopstream(*replay, env=env).stdout.strip() == "nothing to replay"
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone() == (800,)
        assert conn.execute(
            "SELECT count(*) FROM quarantine WHERE status = 'quarantined'"
        ).fetchone() == (0,)


def test_nothing_loaded_warns_and_suggest_then_check_loads_everything(
    tmp_path: Path, database_url: str
) -> None:
    inbox = tmp_path / "in"
    inbox.mkdir()
    orders = storefront_transactions(300, seed=9)
    (inbox / "orders.jsonl").write_bytes(jsonl(orders))
    env = cli_env(database_url, tmp_path / "home", SHOPSTREAM_LOG_FORMAT="json")
    failed = shopstream("run", "--source", str(inbox), "--until-idle", env=env, check=False)
    assert failed.returncode == 3, failed.stderr
    assert "required_fields" in failed.stderr and "mapping suggest" in failed.stderr

    proposed = shopstream("mapping", "suggest", str(inbox), env=env)
    mapping = tmp_path / "proposed.toml"
    mapping.write_text(proposed.stdout)
    lines = sum(len(o["products"]) for o in orders)  # type: ignore[arg-type]
    checked = shopstream("mapping", "check", str(inbox), "--mapping", str(mapping), env=env)
    assert f"would load {lines:,}, quarantine 0" in checked.stderr, checked.stderr
    csv_dir = tmp_path / "csv"
    csv_dir.mkdir()
    renamed = streaming_event_csv(200, seed=10).replace(b"customer_id,", b"client_id,", 1)
    (csv_dir / "x.csv").write_bytes(renamed.replace(b"event_timestamp", b"ts", 1))
    proposed = shopstream("mapping", "suggest", str(csv_dir), env=env)
    assert 'user_id = "client_id"' in proposed.stdout
    assert 'event_timestamp = "ts"' in proposed.stdout
    assert '"customer_email"' in proposed.stdout and '"product_name"' not in proposed.stdout
    (tmp_path / "csv.toml").write_text(proposed.stdout)
    checked = shopstream("mapping", "check", str(csv_dir), "--mapping", str(tmp_path / "csv.toml"),
                         env=env)  # fmt: skip
    assert "quarantine 0" in checked.stderr, checked.stderr


@pytest.mark.slow
def test_kill_9_during_a_mapped_json_run_loses_and_duplicates_nothing(
    tmp_path: Path, database_url: str, pg_server: EmbeddedPostgres
) -> None:
    """Exploded line items, derived ids, five currencies, bad records: killed at random
    moments, then finished, the store equals an uninterrupted run's, table by table."""
    mapping = tmp_path / "transactions.toml"
    mapping.write_text(STOREFRONT_TRANSACTIONS_MAPPING)
    inbox = tmp_path / "in"
    inbox.mkdir()
    orders = storefront_transactions(24_000, seed=8)
    for n in range(24):
        part = jsonl(orders[n * 1_000 : (n + 1) * 1_000])
        bad = b'{"transaction_id": "t", "products": [{"price": "free"}]}\n{not json\n'
        (inbox / f"orders_{n:02}.jsonl").write_bytes(
            part + bad + part[:5_000].rsplit(b"\n", 1)[0] + b"\n"
        )
    run = ("run", "--source", str(inbox), "--until-idle", "--mapping", str(mapping))
    reference_url = fresh_database(pg_server, "reference")
    shopstream(*run, env=cli_env(reference_url, tmp_path / "reference"))

    env = cli_env(database_url, tmp_path / "home", SHOPSTREAM_MAX_BATCH_ROWS="4000")
    kills = kill_9_at_random(run, env, seed=14, low=1.0, high=2.5)
    shopstream(*run, env=env)
    assert kills >= 1
    mine, theirs = snapshot(database_url), snapshot(reference_url)
    for name in TABLES:
        assert mine[name] == theirs[name], name
    read, loaded, duplicates, quarantined, ignored = _accounting(database_url)
    assert (read, loaded, duplicates, quarantined, ignored) == _accounting(reference_url)
    assert read == loaded + duplicates + quarantined + ignored and duplicates > 0
    assert quarantined == 2 * 24
    assert_rollups_match_events(database_url)
