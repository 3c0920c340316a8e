"""Fraud alerts and their review (analyst): every order is scored in its batch's commit."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, status
from pydantic import BaseModel

from shopstream.analytics import fraud
from shopstream.api.deps import Analyst, Database
from shopstream.api.v1.params import Limit, TimeWindow, time_window

router = APIRouter(prefix="/api/v1/fraud", tags=["fraud"])
Window = Annotated[TimeWindow, Depends(time_window)]


class Alert(BaseModel):
    alert_id: int
    event_id: str
    order_id: str | None
    user_id: str
    event_type: str
    event_timestamp: datetime
    amount: Decimal | None
    score: Decimal
    reasons: list[str]
    status: fraud.AlertStatus
    created_at: datetime
    reviewed_by: str | None
    reviewed_at: datetime | None
    model_version: str
    features: dict[str, Any]


@router.get("/alerts", response_model=list[Alert])
def alerts(
    _: Analyst,
    db: Database,
    window: Window,
    alert_status: Annotated[fraud.AlertStatus | None, Query(alias="status")] = None,
    min_score: Annotated[float, Query(ge=0, le=1)] = 0.0,
    limit: Limit = 50,
    after: Annotated[
        int | None, Query(ge=1, description="Page: alerts older than this id.")
    ] = None,
) -> list[dict[str, Any]]:
    """Alerts opened in ``[from, to)``, newest first, with the order's features and the
    reasons; filter by status and score, page with ``after`` (the last id seen)."""
    with db.connection() as conn:
        return fraud.alerts(
            conn,
            status=alert_status,
            min_score=min_score,
            start=window.start,
            end=window.end,
            limit=limit,
            after=after,
        )


class Verdict(BaseModel):
    status: fraud.Review


class ReviewedAlert(BaseModel):
    alert_id: int
    status: fraud.AlertStatus
    reviewed_by: str | None
    reviewed_at: datetime | None


@router.post("/alerts/{alert_id}", response_model=ReviewedAlert)
def review(alert_id: int, verdict: Verdict, who: Analyst, db: Database) -> dict[str, Any]:
    """Confirm or dismiss an open alert (reviewed by the key's name); 404 for no such
    alert, 409 when it was reviewed already (its first verdict stands)."""
    with db.connection() as conn:
        outcome = fraud.review(conn, alert_id, verdict.status, who.name or f"key {who.key_id}")
    if not outcome.found:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no fraud alert {alert_id}")
    assert outcome.row is not None
    if not outcome.changed:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"alert {alert_id} was {outcome.row['status']} by {outcome.row['reviewed_by']}",
        )
    return outcome.row


class ReasonCount(BaseModel):
    reason: str
    alerts: int


class HourCount(BaseModel):
    hour: datetime
    alerts: int


class ScoreBucket(BaseModel):
    low: float
    high: float
    orders: int


class Summary(BaseModel):
    orders_scored: int
    alerts: int
    open: int
    confirmed: int
    dismissed: int
    precision: float | None
    alerts_per_hour: list[HourCount]
    reasons: list[ReasonCount]
    score_distribution: list[ScoreBucket]


@router.get("/summary", response_model=Summary)
def summary(_: Analyst, db: Database, window: Window) -> dict[str, Any]:
    """Over ``[from, to)``: orders scored (by event time), alerts by status and per hour
    (by creation), reason frequencies, the score distribution, and the precision reviews
    give (confirmed / reviewed)."""
    with db.connection() as conn:
        return fraud.summary(conn, window.start, window.end)
