"""One run of a job: locked to one instance, retried with backoff, every attempt logged."""

from __future__ import annotations

import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from shopstream.errors import TerminalError
from shopstream.jobs.catalog import Jobs
from shopstream.jobs.runs import JobContext, JobOutcome, RetryPolicy, run_logged
from shopstream.settings import Settings
from tests.fixtures.history import insert_events, migrated

NO_WAIT = RetryPolicy(retries=3, backoff_seconds=0.0, sleep=lambda _: None)


def logged(url: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            """SELECT job, trigger, target_date, attempt, status, rows_affected, error
                 FROM pipeline_execution_logs ORDER BY run_id"""
        ).fetchall()


def test_a_failed_attempt_is_retried_with_backoff_and_every_attempt_logged(
    database_url: str,
) -> None:
    url = migrated(database_url)
    waits: list[float] = []
    calls = []

    def flaky(ctx: JobContext) -> JobOutcome:
        calls.append(ctx.run_id)
        if len(calls) < 3:
            raise ConnectionError("the warehouse blinked")
        return JobOutcome(7)

    policy = RetryPolicy(retries=3, backoff_seconds=2.0, sleep=waits.append)
    record = run_logged(url, "customers", flaky, trigger="manual", policy=policy)

    assert record.status == "success" and record.attempt == 3 and record.rows == 7
    assert waits == [2.0, 4.0]  # doubling backoff
    rows = logged(url)
    assert [(r[3], r[4]) for r in rows] == [(1, "failed"), (2, "failed"), (3, "success")]
    assert "the warehouse blinked" in str(rows[0][6])
    assert len(set(calls)) == 3  # each attempt is a run of its own


def test_a_terminal_error_is_not_retried(database_url: str) -> None:
    url = migrated(database_url)

    def broken(_: JobContext) -> JobOutcome:
        raise TerminalError("bad suite file")

    record = run_logged(url, "quality", broken, trigger="manual", policy=NO_WAIT)
    assert record.status == "failed" and record.attempt == 1
    assert [r[4] for r in logged(url)] == ["failed"]


def test_retries_give_up_after_the_last_attempt(database_url: str) -> None:
    url = migrated(database_url)

    def always(_: JobContext) -> JobOutcome:
        raise ConnectionError("down")

    record = run_logged(url, "alerts", always, trigger="schedule", policy=NO_WAIT)
    assert record.status == "failed" and record.attempt == 4
    assert [r[4] for r in logged(url)] == ["failed"] * 4


def test_one_instance_at_a_time_across_schedulers(database_url: str) -> None:
    """Two schedulers fire the same job at once: one runs it, the other logs a skip."""
    url = migrated(database_url)
    inside, release = threading.Event(), threading.Event()

    def slow(_: JobContext) -> JobOutcome:
        inside.set()
        assert release.wait(30)
        return JobOutcome(1)

    results = []
    first = threading.Thread(
        target=lambda: results.append(run_logged(url, "daily", slow, trigger="schedule"))
    )
    first.start()
    assert inside.wait(30)
    second = run_logged(url, "daily", slow, trigger="schedule")
    release.set()
    first.join(30)

    assert second.status == "skipped"
    assert results[0].status == "success"
    assert sorted(r[4] for r in logged(url)) == ["skipped", "success"]
    # The lock is free again once the run ended.
    assert run_logged(url, "daily", lambda _: JobOutcome(0), trigger="manual").status == "success"


def test_the_daily_job_catches_up_every_missed_day(database_url: str, tmp_path: Path) -> None:
    """The scheduler was down for days: the next firing aggregates each missed day once,
    as a run of its own, oldest first, then checks the newest day's quality."""
    url = migrated(database_url)
    first_day = date(2026, 3, 2)
    with psycopg.connect(url) as conn:
        insert_events(
            conn,
            (
                (datetime(2026, 3, 2, tzinfo=UTC) + timedelta(hours=h), "purchase", f"u{h % 7}",
                 10.0, "EUR")
                for h in range(0, 24 * 6, 3)
            ),
        )  # fmt: skip
    clock = [datetime(2026, 3, 4, 2, 0, tzinfo=UTC)]
    jobs = Jobs(Settings(rollups=False, home=tmp_path), url, clock=lambda: clock[0], policy=NO_WAIT)

    first = jobs.run("daily", trigger="schedule")
    assert [(r.job, r.status) for r in first] == [
        ("daily", "success"), ("daily", "success"), ("quality", "success"),
    ]  # fmt: skip
    # Down from the 4th to the 8th: the firing on the 8th does the 4th .. 7th.
    clock[0] = datetime(2026, 3, 8, 2, 0, tzinfo=UTC)
    later = jobs.run("daily", trigger="schedule")
    assert [r.job for r in later] == ["daily"] * 4 + ["quality"]

    runs = [r for r in logged(url) if r[0] == "daily"]
    assert [r[2] for r in runs] == [first_day + timedelta(days=n) for n in range(6)]
    assert [r[1] for r in runs] == ["catch-up", "schedule", "catch-up", "catch-up",
                                    "catch-up", "schedule"]  # fmt: skip
    with psycopg.connect(url) as conn:
        days = conn.execute(
            "SELECT date, sum(total_events) FROM daily_aggregations GROUP BY 1 ORDER BY 1"
        ).fetchall()
    assert days == [(first_day + timedelta(days=n), 8) for n in range(6)]
    # Nothing is due any more: a second firing the same night aggregates nothing.
    assert [r.job for r in jobs.run("daily", trigger="schedule")] == []
    # Someone ran the 10th by hand while the scheduler was down again: the next firing
    # still aggregates the 8th and 9th.
    clock[0] = datetime(2026, 3, 11, 2, 0, tzinfo=UTC)
    assert jobs.run("daily", day=date(2026, 3, 10))[0].status == "success"
    caught_up = jobs.run("daily", trigger="schedule")
    daily_days = [r.details["day"] for r in caught_up if r.job == "daily"]
    assert daily_days == ["2026-03-08", "2026-03-09"]


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        (
            "0 2 * * *",
            datetime(2026, 6, 1, 2, 1, tzinfo=UTC),
            datetime(2026, 6, 2, 2, 0, tzinfo=UTC),
        ),
        (
            "*/15 * * * *",
            datetime(2026, 6, 1, 2, 1, tzinfo=UTC),
            datetime(2026, 6, 1, 2, 15, tzinfo=UTC),
        ),
        (
            "0 * * * *",
            datetime(2026, 6, 1, 23, 30, tzinfo=UTC),
            datetime(2026, 6, 2, 0, 0, tzinfo=UTC),
        ),
    ],
)
def test_schedules_are_cron_in_utc(expression: str, after: datetime, expected: datetime) -> None:
    from shopstream.jobs.scheduler import trigger

    assert trigger(expression).get_next_fire_time(None, after) == expected


def test_the_scheduler_holds_every_job_and_catches_up_at_start(
    database_url: str, tmp_path: Path
) -> None:
    """A real APScheduler: every job on its cron, and the daily catch-up fired at start."""
    from shopstream.jobs.scheduler import build

    url = migrated(database_url)
    with psycopg.connect(url) as conn:
        insert_events(conn, [(datetime(2026, 3, 2, 12, tzinfo=UTC), "view", "u1", None, None)])
    clock = lambda: datetime(2026, 3, 3, 12, 0, tzinfo=UTC)  # noqa: E731
    jobs = Jobs(
        Settings(rollups=False, schedule_quality="*/5 * * * *", home=tmp_path), url, clock=clock
    )
    scheduler = build(jobs, blocking=False)
    triggers = {job.id: str(job.trigger) for job in scheduler.get_jobs()}
    assert triggers["quality"].startswith("cron[") and "minute='*/5'" in triggers["quality"]
    assert set(triggers) == {
        "daily", "customers", "quality", "alerts", "lake", "retention", "daily-catch-up",
    }  # fmt: skip
    scheduler.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            runs = [r for r in logged(url) if r[0] == "daily" and r[4] != "running"]
            if runs:
                break
            time.sleep(0.2)
    finally:
        scheduler.shutdown(wait=True)
    assert [(r[2], r[4]) for r in runs] == [(date(2026, 3, 2), "success")]


def test_a_bad_schedule_is_a_clear_error() -> None:
    from shopstream.jobs.scheduler import ScheduleError, trigger

    with pytest.raises(ScheduleError, match="not a cron expression"):
        trigger("every day at two")


def test_a_database_error_that_would_repeat_is_not_retried(database_url: str) -> None:
    url = migrated(database_url)

    def missing_table(ctx: JobContext) -> JobOutcome:
        ctx.conn.execute("SELECT * FROM no_such_table")
        return JobOutcome(0)

    record = run_logged(url, "daily", missing_table, trigger="manual", policy=NO_WAIT)
    assert record.status == "failed" and record.attempt == 1
    assert "UndefinedTable" in str(record.error)
