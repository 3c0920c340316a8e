"""Scoring in the batch transaction against a real PostgreSQL: hand-made sequences for each
rule, scores independent of batch boundaries and arrival order, and never twice."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest

from shopstream.contract import ParsedBatch
from shopstream.fraud.score import fraud_setup
from shopstream.parse.batch import build_batch
from shopstream.settings import Settings
from shopstream.store.loader import Loader
from shopstream.store.migrate import migrate
from shopstream.store.server import EmbeddedPostgres
from tests.fixtures.batches import PREDICATES, incoming
from tests.fixtures.postgres import fresh_database

T0 = datetime(2026, 3, 1, 12, 0)
_ids = iter(range(1, 10**9))


def event(kind: str, user: str, minutes: float, **fields: object) -> dict[str, Any]:
    """A canonical JSON event ``minutes`` after T0; purchases and refunds cost 50 unless
    ``price`` says otherwise."""
    row: dict[str, Any] = {
        "event_id": f"00000000-0000-4000-8000-{next(_ids):012d}",
        "event_type": kind,
        "user_id": user,
        "event_timestamp": (T0 + timedelta(minutes=minutes)).isoformat(),
        "ip_address": f"10.0.0.{sum(map(ord, user)) % 250}",
        "user_agent": f"agent-of-{user}",
        "country": "US",
        "payment_method": f"card-of-{user}",
    }
    if kind in ("purchase", "refund", "view"):
        row |= {"product_id": "p1", "price": 50.0, "quantity": 1}
    return row | fields


def sequences() -> list[dict[str, Any]]:
    """One short story per rule, and quiet customers around them."""
    rows = [event("purchase", f"quiet{n}", n * 7.0) for n in range(30)]
    rows += [event("purchase", "fast", m) for m in (0, 2, 4, 6, 8)]  # velocity_user (5th)
    rows += [  # card_testing: tiny orders from one IP and device across accounts
        event("purchase", f"victim{n}", 100 + n, price=2.0, ip_address="6.6.6.6",
              user_agent="bot", payment_method=f"stolen{n}")
        for n in range(4)
    ]  # fmt: skip
    rows += [event("purchase", "steady", -3000 + d * 600, price=20.0) for d in range(4)]
    rows += [event("purchase", "steady", 200, price=1_500.0)]  # amount_anomaly
    rows += [event("purchase", "newcomer", 300, price=2_000.0)]  # amount_cold_start
    rows += [event("purchase", "victim", -2000 + d * 300, price=40.0) for d in range(4)]
    rows += [  # account takeover: new device and country, then a large order
        event("login", "victim", 400, user_agent="evil", country="RU", ip_address="7.7.7.7"),
        event("purchase", "victim", 402, user_agent="evil", country="RU", ip_address="7.7.7.7",
              price=400.0),
    ]  # fmt: skip
    rows += [
        event("login", "traveller", 500, country="US"),
        event("purchase", "traveller", 520, country="JP"),  # impossible_travel
    ]
    rows += [event("purchase", "returner", 600 + 30 * d, order_id=f"r{d}") for d in range(3)]
    rows += [
        event("refund", "returner", 700 + d, order_id=f"r{d}") for d in range(2)
    ]  # refund_abuse (2nd)
    return rows


def batch_of(rows: list[dict[str, Any]], name: str) -> ParsedBatch:
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    return build_batch([incoming(data, name)], source="/in", predicates=PREDICATES)


def load_all(url: str, parts: list[list[dict[str, Any]]]) -> None:
    with psycopg.connect(url) as conn:
        migrate(conn)
    loader = Loader(url, fraud=fraud_setup(Settings()))
    try:
        for n, part in enumerate(parts):
            outcome = loader.load(batch_of(part, f"/in/part_{n}.jsonl"))
            assert outcome.result is not None and outcome.result.rows_loaded == len(part)
    finally:
        loader.close()


def alerts(url: str) -> dict[str, tuple[str, ...]]:
    """Each alert's order (by its user) and reasons."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT a.user_id, s.event_timestamp AT TIME ZONE 'UTC', a.reasons FROM fraud_alerts a"
            " JOIN fraud_scores s USING (event_id) ORDER BY 1, 2"
        ).fetchall()
    return {f"{r[0]}@{r[1]:%H:%M}": tuple(r[2]) for r in rows}


def scores(url: str) -> dict[str, tuple[object, ...]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT e.user_id, s.event_id::text, s.score, s.reasons FROM fraud_scores s"
            " JOIN events e USING (event_id)"
        ).fetchall()
    return {str(r[1]): (r[0], r[2], tuple(r[3])) for r in rows}


def test_each_rule_fires_on_its_story(database_url: str) -> None:
    rows = sorted(sequences(), key=lambda r: r["event_timestamp"])
    load_all(database_url, [rows])
    fired: dict[str, set[str]] = {}
    for user, _, reasons in scores(database_url).values():
        fired.setdefault(str(user), set()).update(reasons)  # type: ignore[arg-type]
    assert "velocity_user" in fired["fast"]
    assert "card_testing" in fired["victim3"] and not fired["victim0"]
    assert fired["steady"] == {"amount_anomaly"}
    assert fired["newcomer"] == {"amount_cold_start"}
    assert "new_context" in fired["victim"]
    assert fired["traveller"] == {"impossible_travel"}
    assert fired["returner"] == {"refund_abuse"}
    assert all(not fired[f"quiet{n}"] for n in range(30))
    with psycopg.connect(database_url) as conn:
        orders = conn.execute(
            "SELECT count(*) FROM events WHERE event_type IN ('purchase', 'refund')"
        ).fetchone()
        alerted = conn.execute(
            "SELECT count(*) FROM fraud_alerts a JOIN fraud_scores s USING (event_id)"
            " WHERE s.score >= 0.7 AND a.status = 'open'"
        ).fetchone()
        above = conn.execute("SELECT count(*) FROM fraud_scores WHERE score >= 0.7").fetchone()
    assert scores(database_url) and len(scores(database_url)) == (orders or (0,))[0]
    assert alerted == above and above is not None and above[0] >= 5


def test_a_burst_once_revealed_alerts_its_earlier_orders_too(database_url: str) -> None:
    """The first orders of a burst score low (the burst does not exist yet); the order that
    reveals it opens alerts for them as well, in the same commit."""
    rows = sorted(sequences(), key=lambda r: r["event_timestamp"])
    load_all(database_url, [rows])
    opened = alerts(database_url)
    by_user: dict[str, list[tuple[str, ...]]] = {}
    for key, reasons in opened.items():
        by_user.setdefault(key.split("@")[0], []).append(reasons)
    assert len(by_user["fast"]) == 5  # the 5th order fires, the four before it join
    assert sum("velocity_user_burst" in r for r in by_user["fast"]) == 4
    victims = [by_user.get(f"victim{n}", []) for n in range(4)]
    assert all(any("card_testing_burst" in r for r in v) for v in victims[:2])
    assert sum("refund_abuse_burst" in r for r in by_user["returner"]) == 1
    assert not any(user.startswith("quiet") for user in by_user)


@pytest.mark.parametrize("seed", range(3))
def test_scores_do_not_depend_on_batch_boundaries_or_arrival_within_a_batch(
    seed: int, database_url: str, pg_server: EmbeddedPostgres
) -> None:
    rows = sorted(sequences(), key=lambda r: r["event_timestamp"])
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(rows)), 6))
    parts = [rows[a:b] for a, b in zip([0, *cuts], [*cuts, len(rows)], strict=True)]
    for part in parts:
        rng.shuffle(part)  # arrival order inside a batch is not event order
    whole = fresh_database(pg_server, f"whole_{seed}")
    load_all(whole, [rows])
    load_all(database_url, parts)
    assert scores(database_url) == scores(whole)
    assert alerts(database_url) == alerts(whole)


def test_a_duplicate_or_a_second_delivery_is_never_scored_again(database_url: str) -> None:
    rows = sorted(sequences(), key=lambda r: r["event_timestamp"])
    load_all(database_url, [rows])
    before = scores(database_url)
    loader = Loader(database_url, fraud=fraud_setup(Settings()))
    try:
        again = loader.load(batch_of(rows, "/in/again.jsonl"))  # another file, same events
    finally:
        loader.close()
    assert again.result is not None and again.result.rows_loaded == 0
    assert scores(database_url) == before
    with psycopg.connect(database_url) as conn:
        dup = conn.execute(
            "SELECT count(*) - count(DISTINCT event_id) FROM fraud_alerts"
        ).fetchone()
    assert dup == (0,)


def test_fraud_rows_follow_their_events_without_row_level_keys(database_url: str) -> None:
    """Migration 0025's statement-level checks: a fraud row naming no event fails like a
    foreign key (23503); deleted or truncated events take their fraud rows along."""
    rows = sorted(sequences(), key=lambda r: r["event_timestamp"])
    load_all(database_url, [rows])
    with psycopg.connect(database_url) as conn:
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            conn.execute(
                "INSERT INTO fraud_activity (event_id, event_type, event_timestamp, user_id,"
                " order_key, batch_id) VALUES (gen_random_uuid(), 'login', now(), 'u', 'k', 1)"
            )
        conn.rollback()
        conn.execute("DELETE FROM events WHERE user_id = 'fast'")
        left = conn.execute(
            "SELECT (SELECT count(*) FROM fraud_scores WHERE user_id = 'fast'),"
            " (SELECT count(*) FROM fraud_activity WHERE user_id = 'fast'),"
            " (SELECT count(*) FROM fraud_alerts WHERE user_id = 'fast'),"
            " (SELECT count(*) FROM fraud_scores)"
        ).fetchone()
        assert left is not None and left[:3] == (0, 0, 0) and left[3] > 0
        conn.execute("TRUNCATE events")
        emptied = conn.execute(
            "SELECT (SELECT count(*) FROM fraud_scores) + (SELECT count(*) FROM fraud_activity)"
            " + (SELECT count(*) FROM fraud_alerts)"
        ).fetchone()
        assert emptied == (0,)


def test_scores_do_not_depend_on_the_servers_time_zone(
    database_url: str, pg_server: EmbeddedPostgres
) -> None:
    """The features are read on a connection of the scorer's own: it must read the batch's
    handed-over rows in UTC like the loader, whatever the database's default zone."""
    rows = sorted(sequences(), key=lambda r: r["event_timestamp"])
    elsewhere = fresh_database(pg_server, "scores_in_kolkata")
    with psycopg.connect(elsewhere, autocommit=True) as conn:
        name = conn.execute("SELECT current_database()").fetchone()
        assert name is not None
        conn.execute(
            psycopg.sql.SQL("ALTER DATABASE {} SET timezone = 'Asia/Kolkata'").format(
                psycopg.sql.Identifier(str(name[0]))
            )
        )
    load_all(database_url, [rows])
    load_all(elsewhere, [rows])
    assert scores(elsewhere) == scores(database_url)
    assert alerts(elsewhere) == alerts(database_url)
