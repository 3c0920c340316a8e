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
SELECT coalesce(sum(purchases), 0), coalesce(sum(events), 0),
       (SELECT count(*) FROM (SELECT unnest(user_hashes) FROM slice GROUP BY 1) AS users),
       (SELECT count(*) FROM (SELECT unnest(user_hashes) FROM slice
                               WHERE event_type = 'purchase' GROUP BY 1) AS buyers)
  FROM slice
"""
# Money per currency, and converted into the reporting currency at each day's rate when
# every day of that currency has one (shopstream_fx_rate: that day's, or the latest before).
_MONEY: Final = """
WITH daily AS (
    SELECT currency, (window_start AT TIME ZONE 'UTC')::date AS day,
           sum(revenue) AS revenue, sum(purchases) AS orders
      FROM realtime_metrics
     WHERE window_start >= %(start)s AND window_start < %(end)s
       AND event_type IN ('purchase', 'refund')
     GROUP BY 1, 2
), rated AS (
    SELECT *, shopstream_fx_rate(currency, %(quote)s, day) AS rate FROM daily
)
SELECT currency, sum(revenue), sum(orders),
       CASE WHEN bool_and(rate IS NOT NULL) THEN round(sum(revenue * rate), 2) END,
       min(day) FILTER (WHERE rate IS NULL)
  FROM rated GROUP BY currency ORDER BY sum(orders) DESC, currency
"""


@dataclass(frozen=True, slots=True)
class Money:
    """Net revenue in one currency, and in the reporting currency when rates allow."""

    currency: str
    revenue: Decimal
    orders: int
    reporting_revenue: Decimal | None


@dataclass(frozen=True, slots=True)
class Kpis:
    """Headline figures of a time window; revenue is net of refunds. ``revenue`` is one
    total only where one exists without adding currencies: a single currency, or every
    currency converted; otherwise it is None and ``revenue_note`` says why."""

    revenue: Decimal | None
    currency: str | None
    revenue_by_currency: tuple[Money, ...]
    revenue_note: str | None
    orders: int
    average_order_value: Decimal | None
    conversion_rate: float | None  # buying users / active users
    active_users: int
    events: int


def kpis(
    conn: psycopg.Connection[Any],
    start: datetime,
    end: datetime,
    reporting_currency: str | None = None,
) -> Kpis:
    window = {"start": start, "end": end, "quote": reporting_currency}
    row = conn.execute(_KPIS, window).fetchone()
    assert row is not None
    orders, events, active, buyers = row
    unrated: dict[str, date] = {}
    money = []
    for currency, revenue, count, converted, first_unrated in conn.execute(_MONEY, window):
        money.append(Money(currency, Decimal(revenue), int(count), converted))
        if first_unrated is not None:
            unrated[currency] = first_unrated
    revenue, currency, note = _total(money, reporting_currency, unrated)
    return Kpis(
        revenue=revenue,
        currency=currency,
        revenue_by_currency=tuple(money),
        revenue_note=note,
        orders=int(orders),
        average_order_value=(
            round(revenue / orders, 2) if orders and revenue is not None else None
        ),
        conversion_rate=round(int(buyers) / int(active), 4) if active else None,
        active_users=int(active),
        events=int(events),
    )


def _total(
    money: list[Money], reporting_currency: str | None, unrated: dict[str, date]
) -> tuple[Decimal | None, str | None, str | None]:
    """One revenue figure, its currency, and a note when there is none (or it is converted)."""
    if not money:
        return Decimal(0), reporting_currency, None
    if len(money) == 1:
        return money[0].revenue, money[0].currency, None
    codes = ", ".join(m.currency for m in money)
    if reporting_currency is None:
        return (
            None,
            None,
            f"revenue is in {len(money)} currencies ({codes}); money is never added across"
            " currencies: set SHOPSTREAM_REPORTING_CURRENCY and load exchange rates"
            " (shopstream fx load) for one converted total",
        )
    if unrated:
        missing = ", ".join(f"{c} on {d.isoformat()}" for c, d in sorted(unrated.items()))
        return (
            None,
            None,
            f"revenue is in {len(money)} currencies ({codes}) and no rate to"
            f" {reporting_currency} is loaded for {missing} (or before); money is never"
            " added across currencies: load them with shopstream fx load",
        )
    total = sum((m.reporting_revenue or Decimal(0) for m in money), Decimal(0))
    return (
        total,
        reporting_currency,
        f"converted to {reporting_currency} at each day's rate (fx_rates)",
    )


def revenue_series(
    conn: psycopg.Connection[Any],
    start: datetime,
    end: datetime,
    grain: Grain = "minute",
    reporting_currency: str | None = None,
) -> list[dict[str, Any]]:
    """Per minute (or hour), category and currency: net revenue (also in the reporting
    currency when that day has a rate), orders, events."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            """SELECT date_trunc(%(grain)s, window_start, 'UTC') AS window_start, category,
                      currency, sum(revenue) AS revenue,
                      CASE WHEN bool_and(rate IS NOT NULL) THEN round(sum(revenue * rate), 2)
                      END AS reporting_revenue,
                      sum(purchases) AS orders, sum(events) AS events
                 FROM (SELECT *, CASE WHEN revenue = 0 THEN 0 ELSE shopstream_fx_rate(
                                      currency, %(quote)s, (window_start AT TIME ZONE 'UTC')::date)
                                 END AS rate
                         FROM realtime_metrics
                        WHERE window_start >= %(start)s AND window_start < %(end)s) AS m
                GROUP BY 1, 2, 3 ORDER BY 1, 2, 3""",
            {"grain": grain, "start": start, "end": end, "quote": reporting_currency},
        ).fetchall()


_TOP_PRODUCTS: Final = sql.SQL("""
SELECT * FROM (
    SELECT product_id, currency, sum(views) AS views, sum(add_to_cart) AS add_to_cart,
           sum(purchases) AS purchases, sum(refunds) AS refunds, sum(units) AS units,
           sum(revenue) AS revenue,
           CASE WHEN bool_and(rate IS NOT NULL) THEN round(sum(revenue * rate), 2)
           END AS reporting_revenue,
           round(sum(purchases)::numeric / nullif(sum(views), 0), 4) AS view_to_purchase
      FROM (SELECT *, CASE WHEN revenue = 0 THEN 0
                           ELSE shopstream_fx_rate(currency, %(quote)s, day) END AS rate
              FROM product_analytics
             WHERE day BETWEEN %(first)s AND %(last)s
               AND (%(currency)s::text IS NULL OR currency = %(currency)s)) AS p
     GROUP BY product_id, currency
) AS ranked
 ORDER BY {ranking} DESC, product_id, currency LIMIT %(limit)s
""")
# Revenue ranks in the reporting currency where rates allow, else in its own currency.
_RANKINGS: Final = {
    "revenue": sql.SQL("coalesce(reporting_revenue, revenue)"),
    "purchases": sql.SQL("purchases"),
    "views": sql.SQL("views"),
}


def top_products(
    conn: psycopg.Connection[Any],
    day_from: date,
    day_to: date,
    *,
    limit: int = 10,
    by: ProductRanking = "revenue",
    currency: str | None = None,
    reporting_currency: str | None = None,
) -> list[dict[str, Any]]:
    """Products (per currency they sold in) of the days ``day_from``..``day_to``
    (inclusive), best first."""
    query = _TOP_PRODUCTS.format(ranking=_RANKINGS[by])
    params = {
        "first": day_from,
        "last": day_to,
        "limit": limit,
        "currency": currency,
        "quote": reporting_currency,
    }
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, params).fetchall()


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
