"""The read queries behind the dashboard and the API: every figure comes from the rollups.

Each query reads a bounded slice of a rollup table (minutes of ``realtime_metrics``, days
of ``product_analytics``, sessions started in a range), never the whole of ``events``, so
its cost follows the window asked for, not the size of the store.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Final, Literal

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

Grain = Literal["minute", "hour"]
ProductRanking = Literal["revenue", "purchases", "views"]

# Distinct users: unnest in the select list and GROUP BY (a hash) count a day's ~300,000
# hashes in half the time of a lateral unnest with count(DISTINCT …), which sorts them.
_KPIS: Final = """
WITH slice AS (
    SELECT * FROM realtime_metrics
     WHERE window_start >= %(start)s AND window_start < %(end)s
)
SELECT coalesce(sum(revenue), 0), coalesce(sum(purchases), 0), coalesce(sum(events), 0),
       (SELECT count(*) FROM (SELECT unnest(user_hashes) FROM slice GROUP BY 1) AS users),
       (SELECT count(*) FROM (SELECT unnest(user_hashes) FROM slice
                               WHERE event_type = 'purchase' GROUP BY 1) AS buyers)
  FROM slice
"""


@dataclass(frozen=True, slots=True)
class Kpis:
    """Headline figures of a time window; revenue is net of refunds."""

    revenue: Decimal
    orders: int
    average_order_value: Decimal | None
    conversion_rate: float | None  # buying users / active users
    active_users: int
    events: int


def kpis(conn: psycopg.Connection[Any], start: datetime, end: datetime) -> Kpis:
    row = conn.execute(_KPIS, {"start": start, "end": end}).fetchone()
    assert row is not None
    revenue, orders, events, active, buyers = row
    return Kpis(
        revenue=Decimal(revenue),
        orders=int(orders),
        average_order_value=round(Decimal(revenue) / orders, 2) if orders else None,
        conversion_rate=round(int(buyers) / int(active), 4) if active else None,
        active_users=int(active),
        events=int(events),
    )


def revenue_series(
    conn: psycopg.Connection[Any], start: datetime, end: datetime, grain: Grain = "minute"
) -> list[dict[str, Any]]:
    """Per minute (or hour) and category: net revenue, orders, events."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            """SELECT date_trunc(%(grain)s, window_start, 'UTC') AS window_start, category,
                      sum(revenue) AS revenue, sum(purchases) AS orders, sum(events) AS events
                 FROM realtime_metrics
                WHERE window_start >= %(start)s AND window_start < %(end)s
                GROUP BY 1, 2 ORDER BY 1, 2""",
            {"grain": grain, "start": start, "end": end},
        ).fetchall()


_TOP_PRODUCTS: Final = sql.SQL("""
SELECT product_id, sum(views) AS views, sum(add_to_cart) AS add_to_cart,
       sum(purchases) AS purchases, sum(refunds) AS refunds, sum(units) AS units,
       sum(revenue) AS revenue,
       round(sum(purchases)::numeric / nullif(sum(views), 0), 4) AS view_to_purchase
  FROM product_analytics WHERE day BETWEEN %s AND %s
 GROUP BY product_id ORDER BY {ranking} DESC, product_id LIMIT %s
""")


def top_products(
    conn: psycopg.Connection[Any],
    day_from: date,
    day_to: date,
    *,
    limit: int = 10,
    by: ProductRanking = "revenue",
) -> list[dict[str, Any]]:
    """Products of the days ``day_from``..``day_to`` (inclusive), best first."""
    query = _TOP_PRODUCTS.format(ranking=sql.Identifier(by))
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, (day_from, day_to, limit)).fetchall()


_FUNNEL_ANY_ORDER: Final = """
SELECT category, sum(sessions) AS sessions, sum(sessions_with_view) AS sessions_with_view,
       sum(sessions_with_cart) AS sessions_with_cart,
       sum(sessions_with_purchase) AS sessions_with_purchase,
       round(sum(view_and_cart) / nullif(sum(sessions_with_view), 0), 4) AS view_to_cart,
       round(sum(view_and_purchase) / nullif(sum(sessions_with_view), 0), 4)
           AS view_to_purchase
  FROM funnel_sessions WHERE day BETWEEN %s AND %s
 GROUP BY category HAVING sum(sessions) > 0 ORDER BY category
"""
# Strict steps nest (a cart after a view implies the view), so per-day counts add up.
_FUNNEL_STRICT: Final = """
SELECT category, sum(sessions) AS sessions, sum(sessions_with_view) AS sessions_with_view,
       sum(sessions_view_then_cart) AS sessions_view_then_cart,
       sum(sessions_view_cart_purchase) AS sessions_view_cart_purchase,
       round(sum(sessions_view_then_cart) / nullif(sum(sessions_with_view), 0), 4)
           AS view_to_cart,
       round(sum(sessions_view_cart_purchase) / nullif(sum(sessions_with_view), 0), 4)
           AS view_to_purchase
  FROM funnel_strict(%s, %s) GROUP BY category ORDER BY category
"""


def funnel(
    conn: psycopg.Connection[Any], day_from: date, day_to: date, *, strict: bool = False
) -> list[dict[str, Any]]:
    """Per entry category over sessions started on ``day_from``..``day_to``: sessions
    reaching each step in any order (from the ``funnel_sessions`` rollup), or strictly
    view, then cart, then purchase (recomputed from the range's events: slower)."""
    with conn.cursor(row_factory=dict_row) as cur:
        query = _FUNNEL_STRICT if strict else _FUNNEL_ANY_ORDER
        return cur.execute(query, (day_from, day_to)).fetchall()


def segment_sizes(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    """RFM segments of the last ``batch customers`` run: customers and their value."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            """SELECT segment, count(*) AS customers, sum(monetary) AS revenue,
                      round(avg(predicted_clv_365d), 2) AS avg_predicted_clv_365d
                 FROM customer_segments GROUP BY segment ORDER BY customers DESC, segment"""
        ).fetchall()


def coverage(conn: psycopg.Connection[Any]) -> tuple[datetime | None, datetime | None]:
    """The first and last minute that hold events."""
    row = conn.execute("SELECT min(window_start), max(window_start) FROM realtime_metrics")
    first, last = row.fetchone() or (None, None)
    return first, last


def session_stats(conn: psycopg.Connection[Any], start: datetime, end: datetime) -> dict[str, Any]:
    """Sessions starting in ``[start, end)``: count, duration, depth, bounces, buyers."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            """SELECT count(*) AS sessions,
                      round(avg(duration_seconds), 1) AS average_duration_seconds,
                      round(avg(events), 2) AS average_events,
                      round(avg((events = 1)::int), 4) AS bounce_rate,
                      round(avg(purchased::int), 4) AS purchase_rate,
                      coalesce(sum(revenue), 0) AS revenue
                 FROM user_sessions WHERE session_start >= %s AND session_start < %s""",
            (start, end),
        ).fetchone()
    assert row is not None
    return row


def clv_distribution(conn: psycopg.Connection[Any], buckets: int = 10) -> list[dict[str, Any]]:
    """Customers per equal-width bucket of predicted 365-day value."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            """WITH bounds AS (
                   SELECT min(predicted_clv_365d) AS lo, max(predicted_clv_365d) AS hi
                     FROM customer_segments
               ), placed AS (
                   SELECT least(width_bucket(c.predicted_clv_365d, b.lo, b.hi, %(n)s), %(n)s)
                              AS bucket, b.lo, (b.hi - b.lo) / %(n)s AS width
                     FROM customer_segments c, bounds b
                    WHERE c.predicted_clv_365d IS NOT NULL AND b.hi > b.lo
               )
               SELECT round(lo + (bucket - 1) * width, 2) AS low,
                      round(lo + bucket * width, 2) AS high, count(*) AS customers
                 FROM placed GROUP BY bucket, lo, width ORDER BY bucket""",
            {"n": buckets},
        ).fetchall()
