"""One run of a job: a single instance across schedulers, retried with backoff, logged.

Every attempt is a row of ``pipeline_execution_logs``. The instance lock is a session-level
PostgreSQL advisory lock held by the connection that writes those rows, so a scheduler that
dies (even by ``kill -9``) releases it with its connection; a second scheduler that fires
the same job meanwhile logs a ``skipped`` run instead of running it twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Final, Literal

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from shopstream.errors import TerminalError, describe
from shopstream.store.errors import is_transient

log = logging.getLogger(__name__)

JobName = Literal["daily", "customers", "quality", "alerts", "lake", "retention"]
JOB_NAMES: Final[tuple[JobName, ...]] = (
    "daily", "customers", "quality", "alerts", "lake", "retention",
)  # fmt: skip
Trigger = Literal["schedule", "catch-up", "manual", "airflow"]
RunStatus = Literal["success", "failed", "skipped"]

_LOCK_NAMESPACE: Final = "shopstream.job."


@dataclass(frozen=True, slots=True)
class JobContext:
    """What a job's work gets: its own connection, the run it is, the day it covers."""

    conn: psycopg.Connection[Any]
    run_id: int
    target_date: date | None


@dataclass(frozen=True, slots=True)
class JobOutcome:
    rows: int
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RunRecord:
    run_id: int
    job: JobName
    status: RunStatus
    attempt: int
    rows: int | None
    error: str | None
    details: dict[str, Any]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``retries`` more attempts after the first, waiting ``backoff_seconds`` x 2^n."""

    retries: int = 3
    backoff_seconds: float = 30.0
    sleep: Callable[[float], None] = time.sleep

    def delay(self, attempt: int) -> float:
        return float(self.backoff_seconds * 2 ** (attempt - 1))


Work = Callable[[JobContext], JobOutcome]


def run_logged(
    url: str,
    job: JobName,
    work: Work,
    *,
    trigger: Trigger,
    scheduled_for: datetime | None = None,
    target_date: date | None = None,
    policy: RetryPolicy = RetryPolicy(),
) -> RunRecord:
    """Run ``work`` once under the job's lock, retrying failures that are not terminal."""
    scheduled = scheduled_for or datetime.now(UTC)
    with psycopg.connect(url, autocommit=True) as log_conn, psycopg.connect(url) as work_conn:
        work_conn.autocommit = True
        if not _try_lock(log_conn, job):
            run_id = _start(log_conn, job, trigger, scheduled, target_date, 1)
            note = "another instance holds the job's lock"
            _finish(log_conn, run_id, "skipped", None, note, {})
            log.info("job %s skipped: %s", job, note)
            return RunRecord(run_id, job, "skipped", 1, None, note, {})
        try:
            return _attempts(
                log_conn, work_conn, job, work, trigger, scheduled, target_date, policy
            )
        finally:
            _unlock(log_conn, job)


def _attempts(
    log_conn: psycopg.Connection[Any],
    work_conn: psycopg.Connection[Any],
    job: JobName,
    work: Work,
    trigger: Trigger,
    scheduled: datetime,
    target_date: date | None,
    policy: RetryPolicy,
) -> RunRecord:
    attempt = 1
    while True:
        run_id = _start(log_conn, job, trigger, scheduled, target_date, attempt)
        try:
            outcome = work(JobContext(work_conn, run_id, target_date))
        except Exception as error:  # logged, then retried or reported
            message = describe(error)
            _finish(log_conn, run_id, "failed", None, message, {})
            final = _terminal(error) or attempt > policy.retries
            log.warning(
                "job %s attempt %d failed: %s%s", job, attempt, message,
                "" if final else f"; retrying in {policy.delay(attempt):.0f} s",
            )  # fmt: skip
            if final:
                return RunRecord(run_id, job, "failed", attempt, None, message, {})
            policy.sleep(policy.delay(attempt))
            attempt += 1
            continue
        _finish(log_conn, run_id, "success", outcome.rows, None, outcome.details)
        log.info("job %s done: %d rows", job, outcome.rows)
        return RunRecord(run_id, job, "success", attempt, outcome.rows, None, outcome.details)


def _terminal(error: Exception) -> bool:
    """Failures that fail the same way every time: marked terminal, or a database error
    whose SQLSTATE says so (a missing table, a constraint); those are not retried."""
    if isinstance(error, TerminalError):
        return True
    return isinstance(error, psycopg.Error) and not is_transient(error)


def _try_lock(conn: psycopg.Connection[Any], job: JobName) -> bool:
    row = conn.execute(
        "SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (_LOCK_NAMESPACE + job,)
    ).fetchone()
    return bool(row and row[0])


def _unlock(conn: psycopg.Connection[Any], job: JobName) -> None:
    if not conn.closed:
        conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (_LOCK_NAMESPACE + job,))


def _start(
    conn: psycopg.Connection[Any],
    job: JobName,
    trigger: Trigger,
    scheduled: datetime,
    target_date: date | None,
    attempt: int,
) -> int:
    row = conn.execute(
        """INSERT INTO pipeline_execution_logs (job, trigger, scheduled_for, target_date, attempt)
           VALUES (%s, %s, %s, %s, %s) RETURNING run_id""",
        (job, trigger, scheduled, target_date, attempt),
    ).fetchone()
    assert row is not None
    return int(row[0])


def _finish(
    conn: psycopg.Connection[Any],
    run_id: int,
    status: RunStatus,
    rows: int | None,
    error: str | None,
    details: dict[str, Any],
) -> None:
    conn.execute(
        """UPDATE pipeline_execution_logs
              SET status = %s, rows_affected = %s, error = %s, details = %s,
                  finished_at = clock_timestamp()
            WHERE run_id = %s""",
        (status, rows, error, Jsonb(details), run_id),
    )


def history(conn: psycopg.Connection[Any], job: str | None, limit: int) -> list[dict[str, Any]]:
    """The latest runs, newest first (``shopstream jobs history``, the API)."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            """SELECT run_id, job, trigger, scheduled_for, target_date, attempt, status,
                      started_at, finished_at, rows_affected, error, details
                 FROM pipeline_execution_logs
                WHERE %(job)s::text IS NULL OR job = %(job)s
                ORDER BY run_id DESC LIMIT %(limit)s""",
            {"job": job, "limit": limit},
        ).fetchall()


def successful_targets(conn: psycopg.Connection[Any], job: JobName, *, since: date) -> set[date]:
    """The days ``job`` has run successfully for, from ``since`` on."""
    rows = conn.execute(
        """SELECT DISTINCT target_date FROM pipeline_execution_logs
            WHERE job = %s AND status = 'success' AND target_date >= %s""",
        (job, since),
    ).fetchall()
    return {row[0] for row in rows}
