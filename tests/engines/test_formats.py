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

pytestmark = pytest.mark.skipif(not REES46.exists(), reason=f"{DATASETS} not present")


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
