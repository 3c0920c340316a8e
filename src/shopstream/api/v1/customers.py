"""Customer-level and event-level data (analyst and above)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, status
from psycopg.rows import dict_row
from pydantic import BaseModel

from shopstream.api.deps import Analyst, Database
from shopstream.api.v1.params import PRINTABLE, Limit

router = APIRouter(prefix="/api/v1", tags=["customers"])
UserId = Annotated[str, Path(min_length=1, max_length=128, pattern=PRINTABLE)]


class Customer(BaseModel):
    user_id: str
    first_seen: datetime
    last_seen: datetime
    events: int
    sessions: int
    orders: int
    refunds: int
    units: int
    revenue: Decimal
    last_purchase: datetime | None
    segment: str | None
    rfm_score: str | None
    predicted_clv_365d: Decimal | None
    churn_probability: Decimal | None


@router.get("/customers/{user_id}", response_model=Customer)
def customer(_: Analyst, db: Database, user_id: UserId) -> dict[str, Any]:
    """A customer's live metrics and, once ``batch customers`` ran, segment and value."""
    with db.connection() as conn:
        with conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(
                """SELECT m.user_id, m.first_seen, m.last_seen, m.events, m.sessions, m.orders,
                          m.refunds, m.units, m.revenue, m.last_purchase, s.segment, s.rfm_score,
                          s.predicted_clv_365d, s.churn_probability
                     FROM customer_metrics m LEFT JOIN customer_segments s USING (user_id)
                    WHERE m.user_id = %s""",
                (user_id,),
            ).fetchone()
        if row is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such customer")
        return row


class Event(BaseModel):
    event_id: str
    event_type: str
    event_timestamp: datetime
    product_id: str
    session_id: str | None
    category: str | None
    price: Decimal | None
    quantity: int | None


@router.get("/customers/{user_id}/events", response_model=list[Event])
def customer_events(
    _: Analyst, db: Database, user_id: UserId, limit: Limit = 100
) -> list[dict[str, Any]]:
    """The customer's most recent events. They are found through the customer's recent
    sessions (indexed by user), then read by time (BRIN) — ``events`` keeps no per-user
    index, which would slow every load."""
    with db.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            """WITH recent AS (
                       SELECT session_start, session_end FROM user_sessions
                        WHERE user_id = %(user)s ORDER BY session_end DESC LIMIT %(limit)s
                   )
                   SELECT e.event_id::text, e.event_type, e.event_timestamp, e.product_id,
                          e.session_id, e.category, e.price, e.quantity
                     FROM events e
                    WHERE e.user_id = %(user)s
                      AND e.event_timestamp >= (SELECT min(session_start) FROM recent)
                      AND e.event_timestamp <= (SELECT max(session_end) FROM recent)
                    ORDER BY e.event_timestamp DESC, e.event_id LIMIT %(limit)s""",
            {"user": user_id, "limit": limit},
        ).fetchall()
