"""Running itself, seen from the API (analyst): alerts, job runs, quality results, and
Great Expectations' Data Docs."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from fastapi.responses import FileResponse
from psycopg.rows import dict_row
from pydantic import BaseModel

from shopstream.alerting.state import alert_rows
from shopstream.api.deps import DOCS_COOKIE, DOCS_PATH, Analyst, Database
from shopstream.api.v1.params import Limit
from shopstream.jobs.runs import history
from shopstream.quality.run import docs_dir

router = APIRouter(prefix="/api/v1", tags=["operations"])
docs_router = APIRouter(include_in_schema=False)
DOCS_SESSION_SECONDS = 3600


class Alert(BaseModel):
    alert_id: int
    fingerprint: str
    rule: str
    severity: str
    labels: dict[str, Any]
    summary: str
    value: float | None
    started_at: datetime
    last_seen_at: datetime
    resolved_at: datetime | None
    notified_firing_at: datetime | None
    notified_resolved_at: datetime | None
    delivery_error: str | None


@router.get("/alerts", response_model=list[Alert])
def alerts(
    _: Analyst,
    db: Database,
    state: Annotated[Literal["firing", "resolved", "all"], Query()] = "all",
    limit: Limit = 100,
    after: Annotated[
        int | None, Query(ge=0, le=2**63 - 1, description="Older than this id (next page).")
    ] = None,
) -> list[dict[str, Any]]:
    """ShopStream's own data alerts (quality checks, volume and revenue anomalies, fraud,
    Airflow failures), newest first."""
    with db.connection() as conn:
        return alert_rows(conn, state=state, limit=limit, after=after)


class JobRun(BaseModel):
    run_id: int
    job: str
    trigger: str
    scheduled_for: datetime | None
    target_date: date | None
    attempt: int
    status: str
    started_at: datetime
    finished_at: datetime | None
    rows_affected: int | None
    error: str | None
    details: dict[str, Any]


@router.get("/jobs/runs", response_model=list[JobRun])
def job_runs(
    _: Analyst,
    db: Database,
    job: Annotated[Literal["daily", "customers", "quality", "alerts"] | None, Query()] = None,
    limit: Limit = 50,
) -> list[dict[str, Any]]:
    """Runs from pipeline_execution_logs, newest first."""
    with db.connection() as conn:
        return history(conn, job, limit)


class QualityCheck(BaseModel):
    check_id: int
    run_id: int | None
    suite: str
    expectation: str
    column_name: str | None
    target_date: date | None
    success: bool
    severity: str
    observed: dict[str, Any]
    checked_at: datetime


@router.get("/quality/checks", response_model=list[QualityCheck])
def quality_checks(_: Analyst, db: Database) -> list[dict[str, Any]]:
    """The latest result of every check (suite, expectation, column)."""
    with db.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            """SELECT DISTINCT ON (suite, expectation, column_name)
                      check_id, run_id, suite, expectation, column_name, target_date, success,
                      severity, observed, checked_at
                 FROM data_quality_logs
                ORDER BY suite, expectation, column_name, check_id DESC"""
        ).fetchall()


@router.post("/quality/docs/session", status_code=status.HTTP_204_NO_CONTENT)
def docs_session(_: Analyst, request: Request, response: Response) -> None:
    """Let this browser open the Data Docs pages for an hour: the key goes into a cookie
    sent only to /quality-docs (HttpOnly, SameSite=Strict)."""
    authorization = request.headers.get("authorization", "")
    key = request.headers.get("x-api-key") or authorization.removeprefix("Bearer ").strip()
    response.set_cookie(
        DOCS_COOKIE, key, max_age=DOCS_SESSION_SECONDS, path=DOCS_PATH, httponly=True,
        samesite="strict", secure=request.url.scheme == "https",
    )  # fmt: skip


@docs_router.get(DOCS_PATH + "/{page:path}")
def docs_page(_: Analyst, request: Request, page: str = "") -> FileResponse:
    """Great Expectations' Data Docs, as the last quality run built them."""
    root = docs_dir(request.app.state.settings.home_dir).resolve()
    target = (root / (page or "index.html")).resolve()
    if not target.is_relative_to(root) or not target.is_file():
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            "no such page (Data Docs appear after the first `shopstream quality run`)",
        )
    return FileResponse(Path(target))
