"""Data quality, the quarantine and pipeline health (analyst; replay needs admin)."""

from __future__ import annotations

import logging
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Query, Request, status
from psycopg.rows import dict_row
from pydantic import BaseModel, Field

from shopstream.api.deps import Admin, Analyst, Database
from shopstream.api.v1.params import PRINTABLE, Limit, Offset
from shopstream.logs import bind_batch
from shopstream.store import queries

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1", tags=["quality"])


class Quality(BaseModel):
    batches: int
    rows_read: int
    rows_loaded: int
    duplicates: int
    rows_quarantined: int
    late_events: int
    open_quarantine: int
    quarantined_by_rule: dict[str, int]


@router.get("/quality", response_model=Quality)
def quality(_: Analyst, db: Database) -> dict[str, Any]:
    """Every row read, and where it went; open quarantine rows by rule."""
    with db.connection() as conn:
        totals = queries.totals(conn)
        late = conn.execute("SELECT coalesce(sum(late_events), 0) FROM batches").fetchone()
        return {
            "batches": totals.batches,
            "rows_read": totals.rows_read,
            "rows_loaded": totals.rows_loaded,
            "duplicates": totals.duplicates,
            "rows_quarantined": totals.rows_quarantined,
            "late_events": int(late[0]) if late else 0,
            "open_quarantine": totals.open_quarantine,
            "quarantined_by_rule": dict(queries.quarantine_by_rule(conn)),
        }


class QuarantineRow(BaseModel):
    quarantine_id: int
    batch_id: int
    source: str
    line_no: int | None
    scope: str
    rules: list[str]
    raw: str = Field(description="The record as received, at most 4,096 characters of it.")
    raw_size: int = Field(description="Size in bytes of the whole record (or file).")
    raw_sha256: str | None = Field(description="SHA-256 of the whole record (or file).")
    raw_truncated: bool = Field(description="raw holds only the start of the record.")
    status: str


@router.get("/quarantine", response_model=list[QuarantineRow])
def quarantine(
    _: Analyst,
    db: Database,
    rule: Annotated[str | None, Query(max_length=64, pattern=PRINTABLE)] = None,
    limit: Limit = 100,
    offset: Offset = 0,
    after: Annotated[
        int | None,
        Query(ge=0, le=2**63 - 1, description="Only rows with a larger id (next page: last id)."),
    ] = None,
) -> list[dict[str, Any]]:
    """Open quarantine rows with an excerpt of their raw content and the rules they broke;
    a page's size is bounded (``limit`` rows, 4,096 raw characters each)."""
    with db.connection() as conn:
        return queries.quarantine_rows(conn, rule=rule, limit=limit, offset=offset, after=after)


class ReplayRequest(BaseModel):
    rule: str | None = Field(default=None, max_length=64, pattern=PRINTABLE)
    ids: list[int] | None = Field(default=None, max_length=10_000)
    limit: int = Field(default=100_000, ge=1, le=1_000_000)


class ReplayResult(BaseModel):
    batch_id: int | None
    rows_read: int
    rows_loaded: int
    duplicates: int
    rows_quarantined: int


@router.post("/quarantine/replay", response_model=ReplayResult)
def replay(who: Admin, http: Request, body: Annotated[ReplayRequest, Body()]) -> ReplayResult:
    """Re-run open quarantine rows through today's rules, as one accounted batch."""
    from shopstream.engines.embedded.replay import replay_quarantine
    from shopstream.store.loader import LoadStatus

    state = http.app.state
    outcome = replay_quarantine(
        state.ingest_url, state.settings, rule=body.rule, ids=body.ids, limit=body.limit
    )
    if outcome is not None and outcome.status is not LoadStatus.COMMITTED:
        raise HTTPException(status.HTTP_409_CONFLICT, "another replay closed some of these rows")
    result = outcome.result if outcome is not None else None
    if result is not None:
        with bind_batch(result.batch_id):
            log.info(
                "quarantine replay by key %d (%s): read %d, loaded %d, quarantined %d",
                who.key_id, who.name, result.rows_read, result.rows_loaded,
                result.rows_quarantined,
            )  # fmt: skip
    if result is None:
        return ReplayResult(
            batch_id=None, rows_read=0, rows_loaded=0, duplicates=0, rows_quarantined=0
        )
    return ReplayResult(
        batch_id=result.batch_id,
        rows_read=result.rows_read,
        rows_loaded=result.rows_loaded,
        duplicates=result.duplicates_in_batch + result.duplicates_in_store,
        rows_quarantined=result.rows_quarantined,
    )


class Pipeline(BaseModel):
    last_batch_id: int | None
    last_commit: datetime | None
    seconds_since_last_commit: float | None
    events_per_second_5m: Decimal
    batches_5m: int
    average_batch_ms_5m: Decimal | None
    newest_event: datetime | None
    kafka_lag: int | None
    partitions: list[dict[str, Any]]


@router.get("/pipeline", response_model=Pipeline)
def pipeline(_: Analyst, db: Database) -> dict[str, Any]:
    """Ingest health: last commit, throughput and batch time over 5 minutes, Kafka lag."""
    with db.connection() as conn:
        with conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(
                """SELECT (SELECT max(batch_id) FROM batches) AS last_batch_id,
                          (SELECT max(committed_at) FROM batches) AS last_commit,
                          extract(epoch FROM now() - (SELECT max(committed_at)
                                                        FROM batches))::float8
                              AS seconds_since_last_commit,
                          round(coalesce(sum(rows_read), 0) / 300.0, 1) AS events_per_second_5m,
                          count(*) AS batches_5m,
                          round(avg(load_ms + parse_ms)::numeric, 1) AS average_batch_ms_5m,
                          (SELECT max(window_start) + interval '1 minute' FROM realtime_metrics)
                              AS newest_event
                     FROM batches WHERE committed_at > now() - interval '5 minutes'"""
            ).fetchone()
        assert row is not None
        partitions = queries.stream_positions(conn)
        row["partitions"] = partitions
        row["kafka_lag"] = sum(int(p["lag"]) for p in partitions) if partitions else None
        return row


class Batch(BaseModel):
    batch_id: int
    engine: str
    committed_at: datetime
    files: int
    rows_read: int
    rows_loaded: int
    duplicates: int
    rows_quarantined: int
    quarantined_by_rule: dict[str, int]
    load_ms: Decimal | None
    parse_ms: Decimal | None


@router.get("/batches", response_model=list[Batch])
def batches(_: Analyst, db: Database, limit: Limit = 50) -> list[dict[str, Any]]:
    """The most recent committed batches, newest first."""
    with db.connection() as conn:
        return queries.recent_batches(conn, limit)
