"""Foreign exports on the real files in ../shared/datasets/ (see its README for the dirt)."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import psycopg
import pytest

from tests.fixtures.analytics import assert_rollups_match_events
from tests.fixtures.cli import cli_env, shopstream
from tests.fixtures.counts import outcome

DATASETS = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"
REES46 = DATASETS / "rees46" / "2019-Oct-head.csv"
RETAIL = DATASETS / "online_retail" / "online_retail.csv.gz"

pytestmark = pytest.mark.skipif(not REES46.exists(), reason=f"{DATASETS} not present")

# The Online Retail file read independently by DuckDB: each line's event type, user, signed
# amount, and the rules it breaks (see the adapter and the retail_* rules).
RETAIL_LINES = f"""
SELECT *, CASE WHEN InvoiceNo LIKE 'C%' THEN 'refund' ELSE 'purchase' END AS kind,
       coalesce(regexp_replace(CustomerID, '\\.0$', ''), 'guest:' || InvoiceNo) AS customer,
       CASE WHEN InvoiceNo LIKE 'C%' THEN -1 ELSE 1 END
           * abs(Quantity::bigint) * UnitPrice::decimal(12, 2) AS amount,
       InvoiceNo LIKE 'A%'
           OR (InvoiceNo LIKE 'C%') = (Quantity::bigint > 0)
           OR UnitPrice::double <= 0 AS broken
  FROM read_csv('{RETAIL}', header = true, all_varchar = true)
"""


def test_rees46_loads_with_exact_counts(tmp_path: Path, database_url: str) -> None:
    inbox = tmp_path / "in"
    inbox.mkdir()
    shutil.copy(REES46, inbox / "2019-Oct-head.csv")
    env = cli_env(database_url, tmp_path / "home")
    shopstream("run", "--source", str(inbox), "--until-idle", env=env)
    first = outcome(database_url)
    # 17,434 complete rows plus one cut-off last line; 5 extra copies of exact duplicates.
    assert (first.read, first.loaded, first.duplicates, first.quarantined) == (17_435, 17_429, 5, 1)
    source = str(REES46)
    expected = duckdb.sql(
        f"""SELECT CASE event_type WHEN 'cart' THEN 'add_to_cart' ELSE event_type END,
                   count(*), count(DISTINCT user_id), count(DISTINCT user_session)
              FROM (SELECT DISTINCT * FROM read_csv('{source}', header = true,
                                                     all_varchar = true, ignore_errors = true))
             GROUP BY 1 ORDER BY 1"""
    ).fetchall()
    with psycopg.connect(database_url) as conn:
        stored = conn.execute(
            """SELECT event_type, count(*), count(DISTINCT user_id), count(DISTINCT session_id)
                 FROM events GROUP BY 1 ORDER BY 1"""
        ).fetchall()
        rules = conn.execute("SELECT rules, line_no FROM quarantine").fetchall()
        unknown = conn.execute("SELECT count(*) FROM events WHERE category ~ '^[0-9]+$'").fetchone()
    assert stored == expected
    assert rules == [(["column_count"], 17_436)]  # the cut-off last line, with its raw text
    no_code = duckdb.sql(
        f"""SELECT count(*) FROM (SELECT DISTINCT * FROM read_csv('{source}', header = true,
                                   all_varchar = true, ignore_errors = true))
             WHERE category_code IS NULL"""
    ).fetchall()
    assert [unknown] == no_code  # no category_code: the category id stands in

    assert_rollups_match_events(database_url)  # rollups and sessions on real data

    shopstream("run", "--source", str(inbox), "--until-idle", env=env)
    assert outcome(database_url) == first  # re-ingesting: content-derived ids, a no-op


@pytest.mark.slow
def test_online_retail_loads_with_exact_counts(tmp_path: Path, database_url: str) -> None:
    inbox = tmp_path / "in"
    inbox.mkdir()
    shutil.copy(RETAIL, inbox / RETAIL.name)
    env = cli_env(database_url, tmp_path / "home")
    run = ("run", "--source", str(inbox), "--format", "online-retail", "--until-idle")
    shopstream(*run, env=env)
    first = outcome(database_url)

    files = duckdb.connect()
    files.execute(f"CREATE VIEW lines AS {RETAIL_LINES}")
    (read, quarantined, valid, distinct), *_ = files.sql(
        """SELECT count(*), count(*) FILTER (WHERE broken), count(*) FILTER (WHERE NOT broken),
                  (SELECT count(*) FROM (SELECT DISTINCT * EXCLUDE (broken) FROM lines
                                          WHERE NOT broken))
             FROM lines"""
    ).fetchall()
    assert (read, quarantined, valid - distinct, distinct) == (541_909, 2_518, 5_263, 534_128)
    assert (first.read, first.quarantined, first.duplicates, first.loaded) == (
        read, quarantined, valid - distinct, distinct
    )  # fmt: skip
    expected = files.sql(
        """SELECT kind, count(*), count(DISTINCT customer), sum(amount)
             FROM (SELECT DISTINCT * FROM lines WHERE NOT broken) GROUP BY 1 ORDER BY 1"""
    ).fetchall()
    with psycopg.connect(database_url) as conn:
        stored = conn.execute(
            """SELECT event_type, count(*), count(DISTINCT user_id),
                      sum(CASE event_type WHEN 'refund' THEN -1 ELSE 1 END * price * quantity)
                 FROM events GROUP BY 1 ORDER BY 1"""
        ).fetchall()
        reasons = dict(
            conn.execute(
                "SELECT rule, count(*) FROM quarantine, unnest(rules) AS rule GROUP BY 1"
            ).fetchall()
        )
        guests = conn.execute(
            "SELECT count(*) FROM customer_metrics WHERE user_id LIKE 'guest:%'"
        ).fetchone()
    assert stored == expected
    assert reasons == {
        "retail_price_positive": 2_517,  # UnitPrice 0 (2,515) or negative (2 bad-debt lines)
        "purchase_price_quantity": 2_517,
        "retail_quantity_sign": 1_336,  # negative Quantity outside a cancellation
        "quantity_range": 1_336,
        "retail_bad_debt_adjustment": 3,
        "price_range": 2,
    }
    assert guests == (0,)
    assert_rollups_match_events(database_url)  # net revenue, refunds, sessions, funnels

    segments = shopstream("batch", "customers", env=env)
    assert segments.returncode == 0
    with psycopg.connect(database_url) as conn:
        scored = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE user_id LIKE 'guest:%') FROM customer_segments"
        ).fetchone()
    buyers = files.sql(
        "SELECT count(DISTINCT customer) FROM lines WHERE NOT broken AND kind = 'purchase' "
        "AND CustomerID IS NOT NULL"
    ).fetchall()
    assert [scored] == [(buyers[0][0], 0)]

    shopstream(*run, env=env)
    assert outcome(database_url) == first  # re-ingesting: content-derived ids, a no-op
