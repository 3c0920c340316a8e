"""Kafka in and out against a real broker (tansu) and a real PostgreSQL."""

from __future__ import annotations

import random
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from confluent_kafka.admin import AdminClient

from shopstream.sources.kafka_topics import ensure_topic
from shopstream.store.server import EmbeddedPostgres
from tests.fixtures.cli import Background, cli_env, shopstream, start_shopstream
from tests.fixtures.counts import Outcome, outcome
from tests.fixtures.kafka import read_topic
from tests.fixtures.postgres import fresh_database

EVENTS = 200_000
SENT = EVENTS + EVENTS * 3 // 100  # --duplicates 0.03 re-sends that many


def _quarantined_offsets(url: str) -> set[tuple[str, int]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT source, line_no FROM quarantine").fetchall()
    return {(str(s).removeprefix("kafka://"), int(o)) for s, o in rows}


def _dead_letter_offsets(bootstrap: str, topic: str) -> set[tuple[str, int]]:
    found = set()
    for message in read_topic(bootstrap, f"{topic}-dlq"):
        headers = dict(message.headers() or [])  # type: ignore[attr-defined]
        found.add(
            (
                f"{headers['source_topic'].decode()}/{headers['source_partition'].decode()}",
                int(headers["source_offset"]),
            )
        )
        assert headers["rule"]
    return found


@pytest.fixture(scope="module")
def produced(
    kafka_broker: str, pg_server: EmbeddedPostgres, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Outcome]]:
    """A topic of JSON events with dirt, duplicates and late events, and the outcome of
    one uninterrupted run over it."""
    topic = f"shop-{uuid.uuid4().hex[:6]}"
    home = tmp_path_factory.mktemp("kafka-home")
    env = cli_env(None, home)
    shopstream(
        "generate", "--kafka", kafka_broker, "--topic", topic, "--events", str(EVENTS),
        "--seed", "8", "--dirty", "0.01", "--duplicates", "0.03", "--late", "0.01",
        env=env,
    )  # fmt: skip
    url = fresh_database(pg_server)
    shopstream(
        "run", "--source", f"kafka://{kafka_broker}/{topic}", "--group", "reference",
        "--until-idle", env=cli_env(url, home),
    )  # fmt: skip
    yield topic, outcome(url)


def test_topic_loads_exactly_once_with_dead_letters(
    produced: tuple[str, Outcome], kafka_broker: str, database_url: str, tmp_path: Path
) -> None:
    topic, reference = produced
    assert reference.read == SENT
    assert reference.read == reference.loaded + reference.duplicates + reference.quarantined
    assert reference.events == reference.distinct_ids == reference.loaded
    assert 5500 <= reference.duplicates <= 6000  # 6,000 re-sent; dirt on a copy turns some away
    assert reference.quarantine_rows == reference.quarantined > 1000

    env = cli_env(database_url, tmp_path / "home")
    source = f"kafka://{kafka_broker}/{topic}"
    shopstream("run", "--source", source, "--group", "g", "--until-idle", env=env)
    first = outcome(database_url)
    assert first == reference
    assert _dead_letter_offsets(kafka_broker, topic) == _quarantined_offsets(database_url)

    shopstream("run", "--source", source, "--group", "g", "--until-idle", env=env)
    assert outcome(database_url) == first  # offsets in the database: nothing read twice

    status = shopstream("status", env=env).stdout
    assert topic in status and "lag" in status.lower()
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT partition, next_offset, high_watermark FROM source_offsets ORDER BY 1"
        ).fetchall()
    assert [r[0] for r in rows] == [0, 1, 2]
    assert sum(r[1] for r in rows) == SENT
    assert all(r[1] == r[2] for r in rows)  # caught up: no lag


def test_seed_csv_lines_and_unparsable_messages_are_accounted_for(
    kafka_broker: str, topic: str, database_url: str, tmp_path: Path
) -> None:
    from confluent_kafka import Producer

    ensure_topic(kafka_broker, topic, 1)
    producer = Producer({"bootstrap.servers": kafka_broker})
    good_csv = b"0f8fad5b-d9cb-469f-a165-70867728950e,view,p1,u1,2026-01-01 10:00:00,,"
    good_json = (
        b'{"event_id":"1b4e28ba-2fa1-11d2-883f-0016d3cca427","event_type":"purchase",'
        b'"user_id":"u2","product_id":"p2","event_timestamp":"2026-01-01T10:00:00Z",'
        b'"price":9.99,"quantity":2}'
    )
    for value in [good_csv, good_json, b"", b"\x00\xff binary", b'{"event_id": ', good_json]:
        producer.produce(topic, value=value)
    producer.flush()
    env = cli_env(database_url, tmp_path / "home")
    shopstream(
        "run", "--source", f"kafka://{kafka_broker}/{topic}", "--until-idle", "--emit-processed",
        env=env,
    )  # fmt: skip
    final = outcome(database_url)
    assert (final.read, final.loaded, final.duplicates, final.quarantined) == (6, 2, 1, 3)
    assert _quarantined_offsets(database_url) == {(f"{topic}/0", n) for n in (2, 3, 4)}
    dead = read_topic(kafka_broker, f"{topic}-dlq")
    values = sorted(m.value() for m in dead)  # type: ignore[attr-defined]
    assert values == sorted([b"", b"\x00\xff binary", b'{"event_id": '])
    processed = {m.key() for m in read_topic(kafka_broker, "processed-events")}  # type: ignore[attr-defined]
    assert {
        b"0f8fad5b-d9cb-469f-a165-70867728950e",
        b"1b4e28ba-2fa1-11d2-883f-0016d3cca427",
    } <= processed


def test_escapes_postgresql_cannot_store_are_quarantined_and_dead_lettered(
    kafka_broker: str, topic: str, database_url: str, tmp_path: Path
) -> None:
    """A JSON escape decoding to NUL, or a lone surrogate: once, the consumer stopped at
    such a message on every restart."""
    from confluent_kafka import Producer

    ensure_topic(kafka_broker, topic, 1)
    producer = Producer({"bootstrap.servers": kafka_broker})
    rest = b'"user_id":"u2","product_id":"p2","event_timestamp":"2026-01-01T10:00:00Z"}'
    nul = (
        b'{"event_id":"1b4e28ba-2fa1-11d2-883f-0016d3cca427","event_type":"view","session_id":"a\\u0000b",'
        + rest
    )
    lone = (
        b'{"event_id":"2b4e28ba-2fa1-11d2-883f-0016d3cca427","event_type":"view","session_id":"\\ud800",'
        + rest
    )
    good = b'{"event_id":"3b4e28ba-2fa1-11d2-883f-0016d3cca427","event_type":"view",' + rest
    for value in (nul, good, lone):
        producer.produce(topic, value=value)
    producer.flush()
    env = cli_env(database_url, tmp_path / "home")
    shopstream("run", "--source", f"kafka://{kafka_broker}/{topic}", "--until-idle", env=env)
    final = outcome(database_url)
    assert (final.read, final.loaded, final.quarantined) == (3, 1, 2)
    with psycopg.connect(database_url) as conn:
        rules = conn.execute("SELECT line_no, rules FROM quarantine ORDER BY 1").fetchall()
    assert rules == [(0, ["field_encoding"]), (2, ["field_encoding"])]
    dead = sorted(m.value() for m in read_topic(kafka_broker, f"{topic}-dlq"))  # type: ignore[attr-defined]
    assert dead == sorted([nul, lone])


def _rows_read(stdout: str) -> int:
    """Rows read, from the summary line ``N batches: read X, …`` of ``shopstream run``."""
    match = re.search(r"read ([\d,]+)", stdout)
    assert match is not None, stdout
    return int(match.group(1).replace(",", ""))


def _wait_for_progress(url: str, before: int, process: Background) -> None:
    """Until the runner committed a batch (joining the group takes seconds) or ended."""
    deadline = time.monotonic() + 60
    while outcome(url).read == before and process.poll() is None:
        assert time.monotonic() < deadline, "no batch committed within 60 s"
        time.sleep(0.1)


@pytest.mark.slow
def test_kill_9_while_consuming_loses_and_duplicates_nothing(
    produced: tuple[str, Outcome], kafka_broker: str, database_url: str,
    tmp_path: Path,
) -> None:  # fmt: skip
    topic, reference = produced
    env = cli_env(database_url, tmp_path / "home", SHOPSTREAM_MAX_BATCH_ROWS="20000")
    source = f"kafka://{kafka_broker}/{topic}"
    args = ("run", "--source", source, "--group", "crashy", "--until-idle")
    rng = random.Random(0)
    shopstream("db", "migrate", env=env)
    progress_at_kills = []
    for _ in range(3):
        before = outcome(database_url).read
        process = start_shopstream(*args, env=env)
        _wait_for_progress(database_url, before, process)
        time.sleep(rng.uniform(0.0, 1.0))  # then die at a random point of a later batch
        if process.poll() is not None:
            break
        process.kill()
        process.communicate()
        progress_at_kills.append(outcome(database_url).read)
    assert any(0 < read < reference.read for read in progress_at_kills), progress_at_kills
    shopstream(*args, env=env)
    assert outcome(database_url) == reference
    assert _dead_letter_offsets(kafka_broker, topic) >= _quarantined_offsets(database_url)


def test_two_runners_in_a_group_split_the_partitions(
    produced: tuple[str, Outcome], kafka_broker: str, database_url: str, tmp_path: Path
) -> None:
    topic, reference = produced
    env = cli_env(database_url, tmp_path / "home", SHOPSTREAM_MAX_BATCH_ROWS="10000")
    args = ("run", "--source", f"kafka://{kafka_broker}/{topic}", "--group", "pair")
    runners = [start_shopstream(*args, "--until-idle", env=env) for _ in range(2)]
    reads = []
    for runner in runners:
        stdout, stderr = runner.communicate(timeout=300)
        assert runner.returncode == 0, stderr
        reads.append(_rows_read(stdout))
    assert all(read > 0 for read in reads), reads  # both got partitions
    assert outcome(database_url) == reference


@pytest.mark.slow
def test_a_runner_dying_mid_way_leaves_nothing_lost_or_doubled(
    produced: tuple[str, Outcome], kafka_broker: str, database_url: str, tmp_path: Path
) -> None:
    topic, reference = produced
    env = cli_env(
        database_url, tmp_path / "home", SHOPSTREAM_MAX_BATCH_ROWS="10000",
        SHOPSTREAM_LOG_LEVEL="INFO",
    )  # fmt: skip
    args = ("run", "--source", f"kafka://{kafka_broker}/{topic}", "--group", "pair-dying")
    shopstream("db", "migrate", env=env)
    doomed = start_shopstream(*args, env=env)
    survivor = start_shopstream(*args, env=env)
    try:
        # Kill one once both consume (each was assigned partitions), mid-way through the
        # topic. Killed earlier, during the group's first rebalance, the test broker (tansu
        # 0.6) can keep the dead member as group leader for good, which Apache Kafka does not.
        deadline = time.monotonic() + 60
        while not all("assigned" in r.stderr_so_far() for r in (doomed, survivor)):
            assert time.monotonic() < deadline, "the group did not settle within 60 s"
            time.sleep(0.2)
        _wait_for_progress(database_url, 0, doomed)
        time.sleep(random.uniform(0.0, 0.5))
        assert 0 < outcome(database_url).read < reference.read
        doomed.kill()
        doomed.communicate()
        # The survivor takes over the dead member's partitions once its session times out.
        deadline = time.monotonic() + 180
        while outcome(database_url).read < reference.read:
            assert survivor.poll() is None, survivor.communicate()
            assert time.monotonic() < deadline, "the survivor did not take over"
            time.sleep(0.5)
        survivor.terminate()
        _, stderr = survivor.communicate(timeout=120)
        assert survivor.returncode == 0, stderr
    finally:
        for process in (doomed, survivor):
            if process.poll() is None:
                process.kill()
                print(process.communicate()[1][-5000:])
    assert outcome(database_url) == reference


def test_offsets_out_of_range_stop_with_a_clear_error_unless_reset(
    kafka_broker: str, topic: str, database_url: str, tmp_path: Path
) -> None:
    env = cli_env(database_url, tmp_path / "home")
    source = f"kafka://{kafka_broker}/{topic}"
    produce = ("generate", "--kafka", kafka_broker, "--topic", topic, "--partitions", "2")
    shopstream(*produce, "--events", "4000", "--seed", "1", env=env)
    shopstream("run", "--source", source, "--until-idle", env=env)
    loaded = outcome(database_url).loaded

    admin = AdminClient({"bootstrap.servers": kafka_broker})
    admin.delete_topics([topic])[topic].result(timeout=30)
    shopstream(*produce, "--events", "300", "--seed", "2", env=env)  # recreated, fewer

    failed = shopstream("run", "--source", source, "--until-idle", env=env, check=False)
    assert failed.returncode == 1
    message = " ".join(failed.stderr.split())
    assert f"{topic}[" in message and "stored offset" in message and "--reset-offsets" in message
    assert outcome(database_url).loaded == loaded  # nothing moved

    shopstream("run", "--source", source, "--until-idle", "--reset-offsets", "earliest", env=env)
    assert outcome(database_url).loaded == loaded + 300
