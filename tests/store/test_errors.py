"""Transient or terminal, by SQLSTATE; what a load's outcome is; a timeout that never ends."""

from __future__ import annotations

import uuid
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest
from psycopg import errors, sql

from shopstream.contract import ParsedBatch, SourceOffset
from shopstream.errors import LoadFailedError, RetryBudgetSpentError, TerminalError
from shopstream.store.connection import RetryBudget, connect, retry_transient
from shopstream.store.errors import is_transient
from shopstream.store.loader import Loader, LoadStatus
from shopstream.store.migrate import migrate
from tests.fixtures.batches import uuids, views_batch
from tests.fixtures.cli import cli_env, shopstream
from tests.fixtures.counts import outcome

HEADER = "event_id,event_type,product_id,user_id,event_timestamp,quantity,price\n"


@pytest.mark.parametrize(
    ("state", "transient"),
    [
        ("08006", True),  # connection_failure
        ("08001", True),  # cannot connect
        ("40001", True),  # serialization_failure
        ("40P01", True),  # deadlock_detected
        ("55P03", True),  # lock_not_available
        ("57P01", True),  # admin_shutdown
        ("57P02", True),  # crash_shutdown
        ("57P03", True),  # cannot_connect_now
        ("53300", True),  # too_many_connections
        ("57014", False),  # query_canceled: what statement_timeout raises
        ("53100", False),  # disk_full
        ("42501", False),  # insufficient_privilege
        ("23505", False),  # unique_violation
        ("22P02", False),  # invalid_text_representation
    ],
)
def test_transient_or_terminal_by_sqlstate(state: str, transient: bool) -> None:
    assert is_transient(errors.lookup(state)()) is transient


def test_no_sqlstate_means_the_server_never_answered() -> None:
    assert is_transient(psycopg.OperationalError("connection refused"))
    assert not is_transient(ValueError("a bug"))


def test_the_retry_budget_ends_transient_failures() -> None:
    calls = []

    def always_deadlocked() -> None:
        calls.append(1)
        raise errors.DeadlockDetected()

    with pytest.raises(RetryBudgetSpentError) as raised:
        retry_transient(always_deadlocked, what="test", budget=RetryBudget(seconds=60, attempts=3))
    assert len(calls) == 3
    assert isinstance(raised.value, TerminalError)
    assert "40P01" not in str(raised.value) and "DeadlockDetected" in str(raised.value)


def test_load_outcomes(database_url: str) -> None:
    with connect(database_url) as conn:
        migrate(conn)
    loader = Loader(database_url)
    try:
        first = loader.load(views_batch(uuids(0, 5), "/in/a.csv"))
        assert first.status is LoadStatus.COMMITTED and first.result is not None
        again = loader.load(views_batch(uuids(0, 5), "/in/a.csv"))
        assert again.status is LoadStatus.ALREADY_COMMITTED
        assert again.committed_files is not None and len(again.committed_files) == 1
        stream = _with_offsets(views_batch(uuids(200, 2), "/in/b.csv"), start=None, end=2)
        assert loader.load(stream).status is LoadStatus.COMMITTED
        behind = _with_offsets(views_batch(uuids(300, 2), "/in/c.csv"), start=None, end=4)
        moved = loader.load(behind)
        assert moved.status is LoadStatus.OFFSETS_MOVED and moved.moved[0].partition == 0
    finally:
        loader.close()
    assert outcome(database_url).events == 7
    unreachable = Loader("postgresql://nobody@127.0.0.1:1/none", should_stop=lambda: True)
    stopped = unreachable.load(views_batch(uuids(400, 1), "/in/d.csv"))
    assert stopped.status is LoadStatus.ABANDONED


def test_a_terminal_error_fails_the_load_with_its_sqlstate(database_url: str) -> None:
    with connect(database_url) as conn:
        migrate(conn)
        conn.execute("ALTER TABLE events ADD CONSTRAINT no_views CHECK (event_type <> 'view')")
        conn.commit()
    loader = Loader(database_url)
    try:
        with pytest.raises(LoadFailedError) as raised:
            loader.load(views_batch(uuids(0, 2), "/in/a.csv"))
    finally:
        loader.close()
    assert raised.value.sqlstate == "23514" and raised.value.attempts == 1
    assert "/in" in str(raised.value) and "23514" in str(raised.value)


def _with_offsets(batch: ParsedBatch, *, start: int | None, end: int) -> ParsedBatch:
    offset = SourceOffset("g", "t", 0, start, end, end)
    return replace(batch, files=[], offsets=[offset])


@pytest.mark.slow
def test_a_statement_timeout_ends_the_run_with_its_reason(
    tmp_path: Path, database_url: str
) -> None:
    """A server-side statement_timeout that no batch can meet: exit 1 with SQLSTATE 57014
    named, nothing half-written; with the timeout gone a rerun loads everything once."""
    env = cli_env(database_url, tmp_path / "home")
    shopstream("db", "migrate", env=env)
    inbox = tmp_path / "in"
    inbox.mkdir()
    rows = "".join(
        f"{uuid.uuid4()},view,p{n % 9},u{n % 30},2026-11-30 10:00:00,,\n" for n in range(30_000)
    )
    (inbox / "a.csv").write_text(HEADER + rows)
    name = psycopg.conninfo.conninfo_to_dict(database_url)["dbname"]
    login = f"timed_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'timed' IN ROLE shopstream_ingest").format(
                sql.Identifier(login)
            )
        )
        admin.execute(
            sql.SQL("ALTER ROLE {} IN DATABASE {} SET statement_timeout = '5ms'").format(
                sql.Identifier(login), sql.Identifier(str(name))
            )
        )
    ingest_url = psycopg.conninfo.make_conninfo(database_url, user=login, password="timed")
    timed = {**env, "SHOPSTREAM_INGEST_DATABASE_URL": ingest_url}
    run = shopstream("run", "--source", str(inbox), "--until-idle", env=timed, check=False)
    assert run.returncode == 1, run.stderr
    assert "57014" in run.stderr and "Traceback" not in run.stderr
    empty = outcome(database_url)
    assert (empty.events, empty.read, empty.quarantine_rows, empty.ledger_files) == (0, 0, 0, 0)
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute(
            sql.SQL("ALTER ROLE {} IN DATABASE {} RESET statement_timeout").format(
                sql.Identifier(login), sql.Identifier(str(name))
            )
        )
    shopstream("run", "--source", str(inbox), "--until-idle", env=timed)
    final = outcome(database_url)
    assert final.events == final.read == 30_000 and final.ledger_files == 1
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(login)))
        admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(login)))
