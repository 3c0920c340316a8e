"""Rollups equal a from-scratch computation over ``events``, whatever the arrival order."""

from __future__ import annotations

import os
import random
from pathlib import Path

import psycopg
import pytest

from tests.fixtures.analytics import assert_rollups_match_events
from tests.fixtures.cli import cli_env, shopstream


@pytest.mark.parametrize("fmt", ["canonical", "seed"])
def test_rollups_equal_a_recomputation_after_shuffled_late_duplicate_arrivals(
    tmp_path: Path, database_url: str, fmt: str
) -> None:
    env = cli_env(database_url, tmp_path / "home", SHOPSTREAM_MAX_BATCH_ROWS="3000")
    inbox = tmp_path / "in"
    shopstream(
        "generate", "--out", str(inbox), "--events", "40000", "--seed", "13", "--format", fmt,
        "--dirty", "0.02", "--duplicates", "0.05", "--late", "0.1", "--file-rows", "1500",
        env=env,
    )  # fmt: skip
    files = sorted(inbox.iterdir())
    order = list(range(len(files)))
    random.Random(4).shuffle(order)
    for rank, index in enumerate(order):  # delivered oldest-mtime first: a shuffled order
        os.utime(files[index], (1_700_000_000 + rank, 1_700_000_000 + rank))
    shopstream("run", "--source", str(inbox), "--until-idle", env=env)
    assert_rollups_match_events(database_url)

    with psycopg.connect(database_url) as conn:
        late, flagged = conn.execute(
            "SELECT (SELECT sum(late_events) FROM batches),"
            " (SELECT count(*) FROM events WHERE arrived_late)"
        ).fetchone() or (None, None)
    assert late == flagged and late is not None and late > 0  # 2026 events, a week's horizon

    shopstream("run", "--source", str(inbox), "--until-idle", env=env)  # re-delivery: no-op
    shopstream("quarantine", "replay", env=env)  # nothing fixed: replays add nothing
    assert_rollups_match_events(database_url)


def test_rollups_can_be_switched_off(tmp_path: Path, database_url: str) -> None:
    env = cli_env(database_url, tmp_path / "home", SHOPSTREAM_ROLLUPS="false")
    inbox = tmp_path / "in"
    shopstream("generate", "--out", str(inbox), "--events", "2000", "--seed", "1", env=env)
    shopstream("run", "--source", str(inbox), "--until-idle", env=env)
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM realtime_metrics").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM events").fetchone() == (2000,)


def test_a_replayed_quarantine_row_reaches_the_rollups_once(
    tmp_path: Path, database_url: str
) -> None:
    env = cli_env(database_url, tmp_path / "home")
    inbox = tmp_path / "in"
    inbox.mkdir()
    (inbox / "events_1_0.csv").write_text(
        "event_id,event_type,product_id,user_id,event_timestamp,quantity,price\n"
        "5d4f3c2b-1a09-4f8e-9d7c-6b5a4f3e2d1c,purchase,p9,u9,2026-03-01 10:00:00,2,150000.00\n"
        "6d4f3c2b-1a09-4f8e-9d7c-6b5a4f3e2d1c,purchase,p9,u9,2026-03-01 10:00:30,1,10.00\n"
    )
    shopstream("run", "--source", str(inbox), "--until-idle", env=env)
    richer = cli_env(database_url, tmp_path / "home", SHOPSTREAM_MAX_PRICE="1000000")
    for _ in range(2):  # the second replay finds nothing open
        shopstream("quarantine", "replay", env=richer)
    assert_rollups_match_events(database_url)
    with psycopg.connect(database_url) as conn:
        assert conn.execute(
            "SELECT orders, units, revenue FROM customer_metrics WHERE user_id = 'u9'"
        ).fetchone() == (2, 3, 300010)


def test_funnels_any_order_and_strict_handle_skipped_and_reversed_steps(
    tmp_path: Path, database_url: str
) -> None:
    env = cli_env(database_url, tmp_path / "home")
    inbox = tmp_path / "in"
    inbox.mkdir()
    rows = [  # (id suffix, type, user, time, price): three sessions of the same day
        (1, "view", "a", "10:00:00", ""),  # a: view -> cart -> purchase, in order
        (2, "add_to_cart", "a", "10:05:00", ""),
        (3, "purchase", "a", "10:09:00", "5.00"),
        (4, "view", "b", "11:00:00", ""),  # b: view -> purchase, no cart (skipped step)
        (5, "purchase", "b", "11:02:00", "7.00"),
        (6, "add_to_cart", "c", "12:00:00", ""),  # c: cart before view, then purchase
        (7, "view", "c", "12:01:00", ""),
        (8, "purchase", "c", "12:03:00", "9.00"),
    ]
    lines = [
        f"00000000-0000-4000-8000-{n:012d},{kind},p{n},{user},2026-05-04 {time},"
        f"{'1' if price else ''},{price}"
        for n, kind, user, time, price in rows
    ]
    (inbox / "events_1_0.csv").write_text(
        "event_id,event_type,product_id,user_id,event_timestamp,quantity,price\n"
        + "\n".join(lines)
        + "\n"
    )
    shopstream("run", "--source", str(inbox), "--until-idle", env=env)
    with psycopg.connect(database_url) as conn:
        any_order = conn.execute(
            """SELECT sessions, sessions_with_view, sessions_with_cart, sessions_with_purchase,
                      view_to_cart, cart_to_purchase, view_to_purchase
                 FROM funnel_daily WHERE day = '2026-05-04'"""
        ).fetchone()
        strict = conn.execute(
            """SELECT sessions, sessions_with_view, sessions_view_then_cart,
                      sessions_view_cart_purchase
                 FROM funnel_strict('2026-05-04', '2026-05-04')"""
        ).fetchone()
    assert any_order is not None and strict is not None
    assert any_order[:4] == (3, 3, 2, 3)
    assert [float(r) for r in any_order[4:]] == [0.6667, 1.0, 1.0]
    assert strict == (3, 3, 1, 1)  # only a goes view -> cart -> purchase in order
