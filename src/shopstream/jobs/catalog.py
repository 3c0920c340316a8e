"""What each job does. The daily job catches up: it aggregates every finished UTC day
since the last one it aggregated (at most ``SHOPSTREAM_JOB_CATCHUP_DAYS`` back), each day a
run of its own, then runs the quality suites for the newest of them."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row

from shopstream.alerting.anomaly import anomalies
from shopstream.alerting.delivery import Channels, deliver
from shopstream.alerting.state import Scope, Signal, sync
from shopstream.analytics.customers import run_customers
from shopstream.analytics.daily import run_daily
from shopstream.jobs.publish import DAILY_TOPIC, QUALITY_TOPIC, publish
from shopstream.jobs.runs import (
    JobContext,
    JobName,
    JobOutcome,
    RetryPolicy,
    RunRecord,
    Trigger,
    run_logged,
    successful_targets,
)
from shopstream.lake.export import ExportOutcome, export_table
from shopstream.lake.location import LAKE_TABLES, Lake
from shopstream.lake.retention import apply_retention
from shopstream.quality.run import QualityReport, run_suites, write_results
from shopstream.quality.suites import load_suites
from shopstream.schema import EventType
from shopstream.settings import Settings

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Jobs:
    """The jobs of one installation: its settings, its database, its clock."""

    settings: Settings
    url: str
    clock: Clock = utc_now
    policy: RetryPolicy | None = None
    only_suites: tuple[str, ...] = ()  # quality: these suites only (empty: all)
    dry_run: bool = False  # retention: count what would leave, change nothing

    @property
    def retry(self) -> RetryPolicy:
        return self.policy or RetryPolicy(
            self.settings.job_retries, self.settings.job_retry_seconds
        )

    def run(
        self,
        job: JobName,
        *,
        trigger: Trigger = "manual",
        day: date | None = None,
        scheduled_for: datetime | None = None,
    ) -> list[RunRecord]:
        """Run ``job`` (``daily``: the given day, else every day due); one record per run."""
        when = scheduled_for or self.clock()
        if job == "daily":
            return self.run_daily(trigger=trigger, day=day, scheduled_for=when)
        work = {
            "customers": self._customers, "quality": self._quality, "alerts": self._alerts,
            "lake": self._lake, "retention": self._retention,
        }  # fmt: skip
        return [
            run_logged(
                self.url,
                job,
                work[job],
                trigger=trigger,
                scheduled_for=when,
                target_date=day,
                policy=self.retry,
            )
        ]

    def run_daily(
        self, *, trigger: Trigger, day: date | None, scheduled_for: datetime
    ) -> list[RunRecord]:
        days = [day] if day is not None else self.days_due()
        records = []
        for index, target in enumerate(days):
            latest = index == len(days) - 1
            record = run_logged(
                self.url, "daily", self._daily, target_date=target, scheduled_for=scheduled_for,
                trigger=trigger if latest or trigger != "schedule" else "catch-up",
                policy=self.retry,
            )  # fmt: skip
            records.append(record)
            if record.status != "success":
                break  # a later day waits until this one has been aggregated
        if trigger == "schedule" and records and records[-1].status == "success":
            records += self.run("quality", trigger=trigger, day=days[-1])
        return records

    def days_due(self) -> list[date]:
        """Finished UTC days not aggregated yet, oldest first: from the first day ever
        aggregated (never: the first stored event's) to yesterday, less the days done. A day
        run by hand ahead of the schedule leaves the days before it due."""
        yesterday = self.clock().astimezone(UTC).date() - timedelta(days=1)
        earliest = yesterday - timedelta(days=self.settings.job_catchup_days - 1)
        with psycopg.connect(self.url) as conn:
            done = successful_targets(conn, "daily", since=earliest)
            if done:
                first = min(done)
            else:  # never ran: from the first stored event on
                row = conn.execute(
                    "SELECT (min(event_timestamp) AT TIME ZONE 'UTC')::date FROM events"
                ).fetchone()
                first = row[0] if row and row[0] else yesterday
        start = max(first, earliest)
        days = (start + timedelta(days=n) for n in range((yesterday - start).days + 1))
        return [day for day in days if day not in done]

    # -- the work of each job -------------------------------------------------------------

    def _daily(self, ctx: JobContext) -> JobOutcome:
        assert ctx.target_date is not None
        rows = run_daily(ctx.conn, ctx.target_date)
        published = 0
        if self.settings.kafka_bootstrap:
            with ctx.conn.cursor(row_factory=dict_row) as cur:
                aggregates = cur.execute(
                    "SELECT * FROM daily_aggregations WHERE date = %s", (ctx.target_date,)
                ).fetchall()
            published = publish(
                self.settings.kafka_bootstrap, DAILY_TOPIC,
                ((f"{a['date']}:{a['category']}:{a['event_type']}:{a['currency']}", a)
                 for a in aggregates),
            )  # fmt: skip
        return JobOutcome(rows, {"day": str(ctx.target_date), "published": published})

    def _customers(self, ctx: JobContext) -> JobOutcome:
        sizes = run_customers(ctx.conn)
        return JobOutcome(
            int(sizes["customers"].sum()) if sizes.height else 0,
            {"segments": dict(sizes.iter_rows())},
        )

    def _quality(self, ctx: JobContext) -> JobOutcome:
        settings = self.settings
        suites = [
            s for s in load_suites(settings.quality_suites)
            if not self.only_suites or s.name in self.only_suites
        ]  # fmt: skip
        low, high = settings.quality_volume_band
        report = run_suites(
            self.url,
            settings.home_dir,
            suites,
            {
                "event_types": [t.value for t in EventType] + list(settings.custom_event_types),
                "max_price": settings.max_price,
                "max_quantity": settings.max_quantity,
                "volume_min_ratio": low,
                "volume_max_ratio": high,
                "freshness_minutes": settings.quality_freshness_minutes,
                "max_quarantine_rate": settings.quality_max_quarantine_rate,
            },
            day=ctx.target_date,
            enabled={"rollups": settings.rollups},
            now=self.clock(),
        )
        write_results(ctx.conn, ctx.run_id, report)
        changes = sync(
            ctx.conn,
            Scope(("quality_check",), "suite", tuple({c.suite for c in report.checks})),
            [_quality_signal(report, key) for key in {c.key for c in report.failures}],
        )
        if settings.kafka_bootstrap and (changes.fired or changes.resolved):
            publish(
                settings.kafka_bootstrap, QUALITY_TOPIC,
                [(f, {"fingerprint": f, "status": "firing"}) for f in changes.fired]
                + [(f, {"fingerprint": f, "status": "resolved"}) for f in changes.resolved],
            )  # fmt: skip
        deliver(ctx.conn, Channels.from_settings(self.settings))
        return JobOutcome(
            len(report.checks),
            {
                "failed": sorted(c.key for c in report.failures),
                "skipped": list(report.skipped),
                "alerts_fired": list(changes.fired),
                "alerts_resolved": list(changes.resolved),
            },
        )

    def _alerts(self, ctx: JobContext) -> JobOutcome:
        settings = self.settings
        found = anomalies(
            ctx.conn, self.clock(), weeks=settings.anomaly_weeks,
            threshold=settings.anomaly_threshold, min_relative=0.1,
        )  # fmt: skip
        anomaly = sync(ctx.conn, Scope(("volume_anomaly", "revenue_anomaly")), found)
        fraud = sync(ctx.conn, Scope(("fraud_order",)), _fraud_signals(ctx.conn))
        sent = deliver(ctx.conn, Channels.from_settings(self.settings))
        return JobOutcome(
            len(found),
            {
                "fired": list(anomaly.fired + fraud.fired),
                "resolved": list(anomaly.resolved + fraud.resolved),
                "delivered_firing": sent.firing,
                "delivered_resolved": sent.resolved,
                "delivery_error": sent.failed,
            },
        )

    def _lake(self, ctx: JobContext) -> JobOutcome:
        lake = Lake.from_settings(self.settings)
        outcomes = [
            export_table(ctx.conn, self.url, lake, name, max_rows=self.settings.lake_export_rows)
            for name in LAKE_TABLES
        ]
        return JobOutcome(
            sum(o.rows for o in outcomes),
            {"lake": lake.root} | {o.table: _export_details(o) for o in outcomes},
        )

    def _retention(self, ctx: JobContext) -> JobOutcome:
        outcome = apply_retention(
            ctx.conn, self.url, Lake.from_settings(self.settings), self.settings,
            now=self.clock(), dry_run=self.dry_run,
        )  # fmt: skip
        cutoffs = {k: v.isoformat() if v else None for k, v in asdict(outcome.cutoffs).items()}
        return JobOutcome(
            sum(outcome.removed.values()),
            {
                "dry_run": outcome.dry_run,
                "cutoffs": cutoffs,
                "removed": outcome.removed,
                "event_days": [str(d) for d in outcome.days],
                "exported": {o.table: _export_details(o) for o in outcome.exported},
            },
        )


def _export_details(outcome: ExportOutcome) -> dict[str, Any]:
    return {
        "commits": outcome.commits, "batches": outcome.batches, "rows": outcome.rows,
        "delta_version": outcome.delta_version, "recovered": outcome.recovered,
        "forgotten": outcome.forgotten,
    }  # fmt: skip


def _quality_signal(report: QualityReport, key: str) -> Signal:
    check = next(c for c in report.failures if c.key == key)
    observed = check.observed.get("observed_value", check.observed.get("unexpected_count"))
    return Signal(
        fingerprint=f"quality:{key}",
        rule="quality_check",
        severity=check.severity,
        summary=f"{check.suite}: {check.expectation} failed"
        + (f" on {check.column}" if check.column else "")
        + (f" for {check.target_date}" if check.target_date else "")
        + (f" (observed {observed})" if observed is not None else ""),
        value=float(observed) if isinstance(observed, int | float) else None,
        labels={"suite": check.suite, "expectation": check.expectation,
                "column": check.column or ""},
    )  # fmt: skip


def _fraud_signals(conn: psycopg.Connection[Any]) -> list[Signal]:
    """Open fraud alerts reach the alert channels too; reviewing one resolves it."""
    rows = conn.execute(
        """SELECT alert_id, user_id, score, reasons FROM fraud_alerts
            WHERE status = 'open' ORDER BY alert_id"""
    ).fetchall()
    return [
        Signal(
            fingerprint=f"fraud:{alert_id}",
            rule="fraud_order",
            severity="critical" if float(score) >= 0.9 else "warning",
            summary=f"order by {user_id} scored {float(score):.2f}: {', '.join(reasons)}",
            value=float(score),
            labels={"fraud_alert_id": str(alert_id)},
        )
        for alert_id, user_id, score, reasons in rows
    ]
