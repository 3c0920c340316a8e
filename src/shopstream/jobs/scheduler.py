"""``shopstream scheduler`` (or ``serve``/``demo --scheduler``): APScheduler fires the jobs
on their cron schedules (UTC). The daily job also fires once at start, so days missed while
no scheduler ran are caught up at once rather than at the next 02:00."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Final

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger

from shopstream.errors import TerminalError
from shopstream.jobs.catalog import Jobs
from shopstream.jobs.runs import JobName

log = logging.getLogger(__name__)

MISFIRE_GRACE_SECONDS: Final = 300


class ScheduleError(TerminalError):
    """A schedule setting that is not a cron expression."""


def schedules(jobs: Jobs) -> dict[JobName, str]:
    s = jobs.settings
    return {
        "daily": s.schedule_daily,
        "customers": s.schedule_customers,
        "quality": s.schedule_quality,
        "alerts": s.schedule_alerts,
        "lake": s.schedule_lake,
        "retention": s.schedule_retention,
    }


def trigger(expression: str) -> CronTrigger:
    try:
        return CronTrigger.from_crontab(expression, timezone=UTC)
    except ValueError as error:
        raise ScheduleError(f"not a cron expression: {expression!r} ({error})") from error


def build(jobs: Jobs, *, blocking: bool) -> BaseScheduler:
    """A scheduler holding every job; not started. (Its own INFO lines repeat what each
    run logs, so only its warnings are kept.)"""
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    scheduler: BaseScheduler = (
        BlockingScheduler(timezone=UTC) if blocking else BackgroundScheduler(timezone=UTC)
    )
    for name, expression in schedules(jobs).items():
        scheduler.add_job(
            _fire, trigger(expression), args=(jobs, name), id=name, name=name,
            max_instances=1, coalesce=True, misfire_grace_time=MISFIRE_GRACE_SECONDS,
        )  # fmt: skip
    scheduler.add_job(
        _fire, args=(jobs, "daily"), id="daily-catch-up", name="daily catch-up",
        next_run_time=datetime.now(UTC),
    )  # fmt: skip
    return scheduler


def _fire(jobs: Jobs, name: JobName) -> None:
    """One firing; a failure is logged (and in pipeline_execution_logs), never raised into
    the scheduler, so one bad run does not stop the others."""
    try:
        jobs.run(name, trigger="schedule")
    except Exception:
        log.exception("job %s could not run", name)
