"""Run suites with Great Expectations against PostgreSQL; results into ``data_quality_logs``.

Great Expectations keeps a file project under ``SHOPSTREAM_HOME/quality`` so its Data Docs
(the HTML report ``serve`` shows analysts) build there after every run. The database URL
reaches it as a config variable, never written into the project's files.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Final, Literal

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from shopstream.quality.suites import Suite

log = logging.getLogger(__name__)

Severity = Literal["info", "warning", "critical"]
URL_VARIABLE: Final = "SHOPSTREAM_GX_DATABASE_URL"
DATASOURCE: Final = "shopstream"
CHECKPOINT: Final = "shopstream"


@dataclass(frozen=True, slots=True)
class CheckResult:
    suite: str
    expectation: str
    column: str | None
    target_date: date | None
    success: bool
    severity: Severity
    observed: dict[str, Any]

    @property
    def key(self) -> str:
        """Names the check across runs: what an alert for it is fingerprinted by."""
        return f"{self.suite}:{self.expectation}:{self.column or '-'}"


@dataclass(frozen=True, slots=True)
class QualityReport:
    checks: tuple[CheckResult, ...]
    skipped: tuple[str, ...]  # suites not run, with the reason
    docs_index: Path | None

    @property
    def failures(self) -> tuple[CheckResult, ...]:
        return tuple(c for c in self.checks if not c.success)


def docs_dir(home: Path) -> Path:
    return home / "quality" / "gx" / "uncommitted" / "data_docs" / "local_site"


def suite_day(suite: Suite, day: date | None, now: datetime) -> date | None:
    """The day a suite checks: the one asked for, else its own default (None: now)."""
    if suite.day == "now":
        return None
    if day is not None:
        return day
    today = now.astimezone(UTC).date()
    return today if suite.day == "today" else today - timedelta(days=1)


def run_suites(
    url: str,
    home: Path,
    suites: list[Suite],
    parameters: Mapping[str, Any],
    *,
    day: date | None = None,
    enabled: Mapping[str, bool] | None = None,
    now: datetime | None = None,
) -> QualityReport:
    """Validate every suite once (one checkpoint, so one Data Docs update)."""
    now = now or datetime.now(UTC)
    to_run: list[tuple[Suite, date | None]] = []
    skipped: list[str] = []
    for suite in suites:
        if suite.needs and not (enabled or {}).get(suite.needs, True):
            skipped.append(f"{suite.name}: needs {suite.needs}")
        elif suite.day == "now" and day is not None and day != now.astimezone(UTC).date():
            skipped.append(f"{suite.name}: checks the present, not {day}")
        else:
            to_run.append((suite, suite_day(suite, day, now)))
    if not to_run:
        return QualityReport((), tuple(skipped), None)
    with _gx_url(url):
        checks = _validate(url, home, to_run, parameters)
    return QualityReport(checks, tuple(skipped), docs_dir(home) / "index.html")


def write_results(conn: psycopg.Connection[Any], run_id: int | None, report: QualityReport) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            """INSERT INTO data_quality_logs (run_id, suite, expectation, column_name,
                   target_date, success, observed, severity)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s)""",
            [
                (run_id, c.suite, c.expectation, c.column, c.target_date, c.success,
                 Jsonb(c.observed), c.severity)
                for c in report.checks
            ],
        )  # fmt: skip


@contextmanager
def _gx_url(url: str) -> Iterator[None]:
    """Great Expectations reads ``${SHOPSTREAM_GX_DATABASE_URL}`` while a run lasts."""
    before = os.environ.get(URL_VARIABLE)
    os.environ[URL_VARIABLE] = _sqlalchemy_url(url)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(URL_VARIABLE, None)
        else:
            os.environ[URL_VARIABLE] = before


def _sqlalchemy_url(url: str) -> str:
    """SQLAlchemy's name for psycopg 3, which ShopStream already uses."""
    scheme, _, rest = url.partition("://")
    if not rest:  # a libpq key=value string
        from psycopg.conninfo import conninfo_to_dict

        params = conninfo_to_dict(url)
        rest = "/" + str(params.pop("dbname", ""))
        query = "&".join(f"{k}={v}" for k, v in params.items())
        return f"postgresql+psycopg://{rest}?{query}" if query else f"postgresql+psycopg://{rest}"
    return f"postgresql+psycopg://{rest}" if scheme in ("postgres", "postgresql") else url


def _bounds(day: date | None) -> dict[str, sql.Composable]:
    start = datetime.combine(day or datetime.now(UTC).date(), datetime.min.time(), UTC)
    return {
        "day_start": sql.Literal(start),
        "day_end": sql.Literal(start + timedelta(days=1)),
    }


def _validate(
    url: str,
    home: Path,
    to_run: list[tuple[Suite, date | None]],
    parameters: Mapping[str, Any],
) -> tuple[CheckResult, ...]:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    with warnings.catch_warnings():  # it imports pyspark, which warns about pandas' version
        warnings.simplefilter("ignore", FutureWarning)
        import great_expectations as gx
    from great_expectations.checkpoint.actions import UpdateDataDocsAction
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="file", project_root_dir=str(home / "quality"))
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    context.variables.analytics_enabled = False
    context.variables.save()
    # The stored checkpoint names the previous run's assets, which are about to be replaced.
    try:
        context.checkpoints.delete(CHECKPOINT)
    except Exception:  # missing, or stored by a run that died half-way: its file goes
        (home / "quality" / "gx" / "checkpoints" / f"{CHECKPOINT}.json").unlink(missing_ok=True)
    source = context.data_sources.add_or_update_postgres(
        DATASOURCE, connection_string="${" + URL_VARIABLE + "}"
    )
    definitions = []
    days: dict[str, date | None] = {}
    with psycopg.connect(url) as conn:  # to render the queries' literals
        for suite, day in to_run:
            # Great Expectations takes plain SELECTs only: a suite's WITH goes in a subquery.
            query = (
                sql.SQL("SELECT * FROM ({}) AS suite_rows")
                .format(sql.SQL(suite.query).format(**_bounds(day)))
                .as_string(conn)
            )
            if suite.name in {asset.name for asset in source.assets}:
                source.delete_asset(suite.name)
            batch = source.add_query_asset(
                suite.name, query=query
            ).add_batch_definition_whole_table("whole")
            expectations = context.suites.add_or_update(
                gx.ExpectationSuite(name=suite.name, expectations=list(suite.expectations))
            )
            definitions.append(
                context.validation_definitions.add_or_update(
                    gx.ValidationDefinition(name=suite.name, data=batch, suite=expectations)
                )
            )
            days[suite.name] = day
    checkpoint = context.checkpoints.add_or_update(
        gx.Checkpoint(
            name=CHECKPOINT,
            validation_definitions=definitions,
            actions=[UpdateDataDocsAction(name="data_docs")],
            result_format="SUMMARY",
        )
    )
    result = checkpoint.run(expectation_parameters=dict(parameters))
    checks: list[CheckResult] = []
    for validation in result.run_results.values():
        suite_name = validation.suite_name
        for outcome in validation.results:
            config = outcome.expectation_config
            assert config is not None
            kwargs = config.kwargs
            checks.append(
                CheckResult(
                    suite=suite_name,
                    expectation=config.type,
                    column=kwargs.get("column") or kwargs.get("column_A"),
                    target_date=days.get(suite_name),
                    success=bool(outcome.success),
                    severity=(config.meta or {}).get("severity", "warning"),
                    observed=json.loads(json.dumps(outcome.result, default=str)),
                )
            )
    return tuple(checks)
