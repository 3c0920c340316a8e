"""Aggregate figures (viewer and above): KPIs, time series, products, funnels, sessions,
segments. Every number comes from the rollups via :mod:`shopstream.analytics.dashboard`."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from shopstream.analytics import dashboard
from shopstream.api.deps import Database, ReportingCurrency, Viewer
from shopstream.api.v1.params import (
    PRINTABLE,
    DayRange,
    Limit,
    TimeWindow,
    day_range,
    time_window,
)

router = APIRouter(prefix="/api/v1", tags=["analytics"])
Window = Annotated[TimeWindow, Depends(time_window)]
Days = Annotated[DayRange, Depends(day_range)]
Currency = Annotated[str | None, Query(pattern=r"^[A-Z]{3}$", description="ISO 4217 code")]


class CurrencyRevenue(BaseModel):
    currency: str
    revenue: Decimal
    orders: int
    reporting_revenue: Decimal | None


class Kpis(BaseModel):
    revenue: Decimal | None
    currency: str | None
    revenue_by_currency: list[CurrencyRevenue]
    revenue_note: str | None
    orders: int
    average_order_value: Decimal | None
    conversion_rate: float | None
    active_users: int
    events: int


@router.get("/kpis", response_model=Kpis)
def kpis(_: Viewer, db: Database, window: Window, reporting: ReportingCurrency) -> Kpis:
    """Headline figures over ``[from, to)``: revenue net of refunds (per currency, and as
    one total only without adding currencies: one currency, or all converted into
    SHOPSTREAM_REPORTING_CURRENCY; ``revenue_note`` says why there is none), orders,
    average order value, conversion (buying users / active users), active users, events."""
    with db.connection() as conn:
        figures = dashboard.kpis(conn, window.start, window.end, reporting)
        return Kpis(
            revenue=figures.revenue,
            currency=figures.currency,
            revenue_by_currency=[
                CurrencyRevenue(
                    currency=m.currency,
                    revenue=m.revenue,
                    orders=m.orders,
                    reporting_revenue=m.reporting_revenue,
                )
                for m in figures.revenue_by_currency
            ],
            revenue_note=figures.revenue_note,
            orders=figures.orders,
            average_order_value=figures.average_order_value,
            conversion_rate=figures.conversion_rate,
            active_users=figures.active_users,
            events=figures.events,
        )


class Coverage(BaseModel):
    first_minute: datetime | None
    last_minute: datetime | None


@router.get("/coverage", response_model=Coverage)
def coverage(_: Viewer, db: Database) -> Coverage:
    """The first and last minute holding events (dashboards anchor their windows here)."""
    with db.connection() as conn:
        first, last = dashboard.coverage(conn)
        return Coverage(first_minute=first, last_minute=last)


class SeriesPoint(BaseModel):
    window_start: datetime
    category: str
    currency: str
    revenue: Decimal
    reporting_revenue: Decimal | None
    orders: int
    events: int


@router.get("/timeseries", response_model=list[SeriesPoint])
def timeseries(
    _: Viewer,
    db: Database,
    window: Window,
    reporting: ReportingCurrency,
    grain: Literal["minute", "hour"] = "minute",
    category: Annotated[str | None, Query(max_length=128, pattern=PRINTABLE)] = None,
    currency: Currency = None,
) -> list[dict[str, Any]]:
    """Net revenue, orders and events per minute (or hour), category and currency (also
    in the reporting currency where that day has a rate)."""
    with db.connection() as conn:
        rows = dashboard.revenue_series(conn, window.start, window.end, grain, reporting)
        return [
            r
            for r in rows
            if (category is None or r["category"] == category)
            and (currency is None or r["currency"] == currency)
        ]


class Product(BaseModel):
    product_id: str
    currency: str
    views: int
    add_to_cart: int
    purchases: int
    refunds: int
    units: int
    revenue: Decimal
    reporting_revenue: Decimal | None
    view_to_purchase: Decimal | None


@router.get("/products/top", response_model=list[Product])
def top_products(
    _: Viewer,
    db: Database,
    days: Days,
    reporting: ReportingCurrency,
    limit: Limit = 10,
    by: dashboard.ProductRanking = "revenue",
    currency: Currency = None,
) -> list[dict[str, Any]]:
    """Best products (one row per currency they sold in) of the days ``from``..``to`` by
    net revenue (in the reporting currency where rates allow), purchases or views."""
    with db.connection() as conn:
        return dashboard.top_products(
            conn,
            days.first,
            days.last,
            limit=limit,
            by=by,
            currency=currency,
            reporting_currency=reporting,
        )


class FunnelStep(BaseModel):
    category: str
    sessions: int
    sessions_with_view: int
    sessions_with_cart: int | None = None
    sessions_with_purchase: int | None = None
    sessions_view_then_cart: int | None = None
    sessions_view_cart_purchase: int | None = None
    view_to_cart: Decimal | None
    view_to_purchase: Decimal | None


@router.get("/funnel", response_model=list[FunnelStep])
def funnel(_: Viewer, db: Database, days: Days, strict: bool = False) -> list[dict[str, Any]]:
    """Sessions per entry category reaching view, cart and purchase: in any order, or with
    ``strict=true`` in that order (a purchase without an earlier cart stops at the view)."""
    with db.connection() as conn:
        return dashboard.funnel(conn, days.first, days.last, strict=strict)


class SessionStats(BaseModel):
    sessions: int
    average_duration_seconds: Decimal | None
    average_events: Decimal | None
    bounce_rate: Decimal | None
    purchase_rate: Decimal | None
    revenue: Decimal


@router.get("/sessions/stats", response_model=SessionStats)
def session_stats(_: Viewer, db: Database, window: Window) -> dict[str, Any]:
    """Sessions starting in ``[from, to)``: duration, depth, bounces (one event), buyers."""
    with db.connection() as conn:
        return dashboard.session_stats(conn, window.start, window.end)


class Segment(BaseModel):
    segment: str
    customers: int
    revenue: Decimal
    avg_predicted_clv_365d: Decimal | None


@router.get("/segments", response_model=list[Segment])
def segments(_: Viewer, db: Database) -> list[dict[str, Any]]:
    """RFM segment sizes from the last ``shopstream batch customers``."""
    with db.connection() as conn:
        return dashboard.segment_sizes(conn)


class ClvBucket(BaseModel):
    low: Decimal
    high: Decimal
    customers: int


@router.get("/segments/clv", response_model=list[ClvBucket])
def clv_distribution(_: Viewer, db: Database) -> list[dict[str, Any]]:
    """How predicted 365-day customer value is spread (10 equal-width buckets)."""
    with db.connection() as conn:
        return dashboard.clv_distribution(conn)
