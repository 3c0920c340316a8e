"""Commands that run the installation by itself: ``scheduler``, ``jobs``, ``quality``,
``alerts``, ``monitoring`` and ``airflow``."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

import typer
from rich.table import Table

from shopstream.cli import _database, console, err
from shopstream.jobs.runs import JobName, RunRecord
from shopstream.settings import Settings

jobs_app = typer.Typer(no_args_is_help=True, help="Batch jobs: list, run one now, history.")
quality_app = typer.Typer(no_args_is_help=True, help="Data-quality suites (Great Expectations).")
alerts_app = typer.Typer(no_args_is_help=True, help="ShopStream's own data alerts.")
monitoring_app = typer.Typer(no_args_is_help=True, help="Prometheus rules and configuration.")
airflow_app = typer.Typer(no_args_is_help=True, help="Orchestrate the jobs with Airflow.")

DayOption = Annotated[
    datetime | None, typer.Option("--date", formats=["%Y-%m-%d"], help="UTC day.")
]


def register(app: typer.Typer) -> None:
    app.command()(scheduler)
    app.add_typer(jobs_app, name="jobs")
    app.add_typer(quality_app, name="quality")
    app.add_typer(alerts_app, name="alerts")
    app.add_typer(monitoring_app, name="monitoring")
    app.add_typer(airflow_app, name="airflow")


def _day(value: datetime | None) -> date | None:
    return value.date() if value else None


def scheduler() -> None:
    """Run the jobs on their schedules (SHOPSTREAM_SCHEDULE_*, cron, UTC) until Ctrl-C."""
    from shopstream.jobs.catalog import Jobs
    from shopstream.jobs.scheduler import build

    settings = Settings()
    with _database(settings, "ingest") as url:
        runner = build(Jobs(settings, url), blocking=True)
        console.print("scheduler running; Ctrl-C stops it")
        try:
            runner.start()
        except (KeyboardInterrupt, SystemExit):
            runner.shutdown(wait=False)


@jobs_app.command("list")
def jobs_list() -> None:
    """Each job, its schedule, next run and last run."""
    from datetime import UTC

    from shopstream.jobs.catalog import Jobs
    from shopstream.jobs.runs import history
    from shopstream.jobs.scheduler import schedules, trigger
    from shopstream.store.connection import connect

    settings = Settings()
    with _database(settings, "ingest") as url, connect(url) as conn:
        jobs = Jobs(settings, url)
        table = Table("job", "schedule (UTC)", "next run", "last run", "status", "rows")
        for name, expression in schedules(jobs).items():
            upcoming = trigger(expression).get_next_fire_time(None, datetime.now(UTC))
            last = history(conn, name, 1)
            table.add_row(
                name, expression, f"{upcoming:%Y-%m-%d %H:%M}" if upcoming else "-",
                f"{last[0]['started_at']:%Y-%m-%d %H:%M:%S}" if last else "never",
                last[0]["status"] if last else "-",
                str(last[0]["rows_affected"] or "") if last else "",
            )  # fmt: skip
    console.print(table)


@jobs_app.command("run")
def jobs_run(
    name: Annotated[
        JobName, typer.Argument(help="daily, customers, quality, alerts, lake or retention.")
    ],
    day: DayOption = None,
    via: Annotated[
        Literal["manual", "airflow"], typer.Option("--trigger", help="Who asks (logged).")
    ] = "manual",
) -> None:
    """Run one job now, under its lock, with retries; exit 1 if a run failed.
    ``daily`` without --date aggregates every finished day not aggregated yet."""
    from shopstream.jobs.catalog import Jobs

    settings = Settings()
    with _database(settings, "ingest") as url:
        records = Jobs(settings, url).run(name, trigger=via, day=_day(day))
    report_runs(records)


def report_runs(records: list[RunRecord]) -> None:
    """One line per run; exit 1 if one failed."""
    for record in records:
        colour = {"success": "green", "skipped": "yellow", "failed": "red"}[record.status]
        console.print(
            f"{record.job} run {record.run_id}: [{colour}]{record.status}[/{colour}]"
            + (f", {record.rows} rows" if record.rows is not None else "")
            + (f" (attempt {record.attempt})" if record.attempt > 1 else "")
            + (f": {record.error}" if record.error else "")
        )
    if any(r.status == "failed" for r in records):
        raise typer.Exit(1)


@jobs_app.command("history")
def jobs_history(
    job: Annotated[str | None, typer.Option(help="Only this job.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Runs to show.")] = 20,
) -> None:
    """The latest runs from pipeline_execution_logs, newest first."""
    from shopstream.jobs.runs import history
    from shopstream.store.connection import connect

    with _database(Settings(), "ingest") as url, connect(url) as conn:
        rows = history(conn, job, limit)
    table = Table(
        "run", "job", "trigger", "day", "attempt", "status", "started", "s", "rows", "error"
    )
    for r in rows:
        took = (r["finished_at"] - r["started_at"]).total_seconds() if r["finished_at"] else None
        table.add_row(
            str(r["run_id"]), r["job"], r["trigger"], str(r["target_date"] or ""),
            str(r["attempt"]), r["status"], f"{r['started_at']:%Y-%m-%d %H:%M:%S}",
            f"{took:.1f}" if took is not None else "",
            "" if r["rows_affected"] is None else str(r["rows_affected"]),
            r["error"] or "",
        )  # fmt: skip
    console.print(table)


@quality_app.command("list")
def quality_list() -> None:
    """The suites (shipped, or SHOPSTREAM_QUALITY_SUITES) and their expectations."""
    from shopstream.quality.suites import load_suites

    table = Table("suite", "day", "expectations", "checks")
    for suite in load_suites(Settings().quality_suites):
        table.add_row(
            suite.name, suite.day, str(len(suite.expectations)), suite.about
        )  # fmt: skip
    console.print(table)


@quality_app.command("run")
def quality_run(
    suite: Annotated[list[str] | None, typer.Option(help="Only this suite (repeatable).")] = None,
    day: DayOption = None,
) -> None:
    """Run the suites now (logged as a quality job run); exit 1 if an expectation failed."""
    from shopstream.jobs.catalog import Jobs

    settings = Settings()
    with _database(settings, "ingest") as url:
        [record] = Jobs(settings, url, only_suites=tuple(suite or ())).run("quality", day=_day(day))
    if record.status != "success":
        err.print(f"[red]quality run {record.run_id} failed:[/red] {record.error}")
        raise typer.Exit(2)
    failed = record.details.get("failed", [])
    console.print(f"quality run {record.run_id}: {record.rows} checks, {len(failed)} failed")
    for key in failed:
        console.print(f"  [red]failed[/red] {key}")
    for reason in record.details.get("skipped", []):
        console.print(f"  [dim]skipped {reason}[/dim]")
    if failed:
        raise typer.Exit(1)


@alerts_app.command("list")
def alerts_list(
    state: Annotated[
        Literal["firing", "resolved", "all"], typer.Option(help="firing, resolved or all.")
    ] = "firing",
    limit: Annotated[int, typer.Option(min=1)] = 50,
) -> None:
    """Data alerts from the alerts table, newest first."""
    from shopstream.alerting.state import alert_rows
    from shopstream.store.connection import connect

    with _database(Settings(), "ingest") as url, connect(url) as conn:
        rows = alert_rows(conn, state=state, limit=limit)
    table = Table("id", "rule", "severity", "since", "resolved", "summary")
    for r in rows:
        table.add_row(
            str(r["alert_id"]), r["rule"], r["severity"], f"{r['started_at']:%Y-%m-%d %H:%M}",
            f"{r['resolved_at']:%Y-%m-%d %H:%M}" if r["resolved_at"] else "",
            r["summary"],
        )  # fmt: skip
    console.print(table)


@alerts_app.command("raise")
def alerts_raise(
    rule: Annotated[str, typer.Argument(help="What fires, e.g. airflow_task_failed.")],
    summary: Annotated[str, typer.Option(help="One line for the people it reaches.")],
    fingerprint: Annotated[str | None, typer.Option(help="Default: RULE.")] = None,
    severity: Annotated[Literal["info", "warning", "critical"], typer.Option()] = "warning",
    resolve: Annotated[bool, typer.Option(help="Resolve it instead.")] = False,
) -> None:
    """Raise (or --resolve) an alert from outside, e.g. an Airflow callback; delivered now."""
    from shopstream.alerting.delivery import Channels, deliver
    from shopstream.alerting.state import Scope, Signal, sync
    from shopstream.store.connection import connect

    settings = Settings()
    key = fingerprint or rule
    with _database(settings, "ingest") as url, connect(url) as conn:
        conn.autocommit = True
        holding = [] if resolve else [Signal(key, rule, severity, summary)]
        changes = sync(conn, Scope((rule,), fingerprints=(key,)), holding)
        deliver(conn, Channels.from_settings(settings))
    console.print(
        f"{key}: " + ("fired" if changes.fired else "resolved" if changes.resolved else "unchanged")
    )


@monitoring_app.command("rules")
def monitoring_rules() -> None:
    """Prometheus alert rules for ShopStream (thresholds from SHOPSTREAM_ALERT_*)."""
    from shopstream.alerting.prometheus import Thresholds, rules

    s = Settings()
    print(
        rules(
            Thresholds(
                freshness_seconds=s.alert_freshness_seconds,
                no_commit_seconds=s.alert_no_commit_seconds,
                quarantine_rate=s.alert_quarantine_rate, kafka_lag=s.alert_kafka_lag,
                pending_for=s.alert_pending_for,
            )
        ),
        end="",
    )  # fmt: skip


@monitoring_app.command("prometheus-config")
def monitoring_prometheus_config(
    api: Annotated[str, typer.Option(help="host:port of shopstream serve.")] = "127.0.0.1:8000",
    runner: Annotated[
        str, typer.Option(help="host:port of shopstream run --metrics-port.")
    ] = "127.0.0.1:9108",
    alertmanager: Annotated[str, typer.Option(help="host:port.")] = "127.0.0.1:9093",
    rules_file: Annotated[
        str, typer.Option(help="Where the output of `monitoring rules` is saved.")
    ] = "shopstream-rules.yml",
    interval: Annotated[str, typer.Option(help="Scrape and evaluation interval.")] = "15s",
) -> None:
    """A prometheus.yml scraping serve and the runner, with the rules and Alertmanager."""
    from shopstream.alerting.prometheus import scrape_config

    s = Settings()
    token = s.metrics_token.get_secret_value() if s.metrics_token else None
    print(
        scrape_config(
            api=api, runner=runner, alertmanager=alertmanager, rules_file=rules_file,
            interval=interval, bearer_token=token if s.metrics_access == "key" else None,
        ),
        end="",
    )  # fmt: skip


@airflow_app.command("dag")
def airflow_dag(
    schedule: Annotated[str, typer.Option(help="Cron of the DAG (UTC).")] = "0 2 * * *",
    retries: Annotated[int, typer.Option(min=0)] = 3,
    command: Annotated[
        str | None, typer.Option(help="How Airflow's workers call shopstream; default this one.")
    ] = None,
) -> None:
    """Print an Airflow DAG: daily -> customers -> quality, with retries and failure alerts."""
    from shopstream.jobs.airflow import render_dag, this_command

    print(render_dag(schedule=schedule, retries=retries, command=command or this_command()), end="")
