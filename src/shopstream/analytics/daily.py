"""``shopstream batch daily``: the seed's ``daily_aggregations`` for one UTC day.

Recomputed from ``events`` and ``user_sessions`` in one transaction: rows of the day are
upserted (``created_at`` kept) and rows that no longer exist removed, so running it twice
gives the same rows.
"""

from __future__ import annotations

from datetime import date
from typing import Any, Final

import psycopg

TOP_PRODUCTS: Final = 5

_DAILY: Final = """
WITH day_events AS (
    SELECT e.*, coalesce(e.category, 'unknown') AS cat, shopstream_currency(e.currency) AS cur,
           shopstream_net_amount(e.event_type, e.price, e.quantity) AS amount
      FROM events e
     WHERE e.event_timestamp >= %(day)s::timestamp AT TIME ZONE 'UTC'
       AND e.event_timestamp < (%(day)s::date + 1)::timestamp AT TIME ZONE 'UTC'
), with_sessions AS (  -- each event's session: its session_id, else the stored gap session
    SELECT d.*, coalesce(d.session_id, s.session_key) AS session
      FROM day_events d
      LEFT JOIN user_sessions s
        ON d.session_id IS NULL AND s.source_session_id IS NULL AND s.user_id = d.user_id
       AND d.event_timestamp BETWEEN s.session_start AND s.session_end
), per_category AS (
    SELECT cat,
           round(count(DISTINCT user_id) FILTER (WHERE event_type = 'purchase')::numeric
                 / nullif(count(DISTINCT user_id) FILTER (WHERE event_type = 'view'), 0), 4)
               AS conversion_rate
      FROM day_events GROUP BY cat
), per_currency AS (  -- money is never added across currencies
    SELECT cat, cur,
           round(sum(amount) / nullif(count(*) FILTER (WHERE event_type = 'purchase'), 0), 2)
               AS avg_order_value
      FROM day_events GROUP BY cat, cur
), products AS (
    SELECT cat, event_type, cur, product_id, count(*) AS events, sum(amount) AS revenue,
           row_number() OVER (PARTITION BY cat, event_type, cur
                              ORDER BY CASE WHEN event_type = 'purchase' THEN sum(amount)
                                            ELSE count(*) END DESC, product_id) AS rank
      FROM day_events GROUP BY cat, event_type, cur, product_id
), top AS (
    SELECT cat, event_type, cur,
           jsonb_agg(jsonb_build_object('product_id', product_id, 'events', events,
                                        'revenue', revenue) ORDER BY rank) AS top_products
      FROM products WHERE rank <= %(top)s GROUP BY cat, event_type, cur
)
INSERT INTO daily_aggregations AS a (date, category, event_type, currency, total_events,
    total_revenue, unique_users, unique_sessions, conversion_rate, avg_order_value, top_products)
SELECT %(day)s::date, w.cat, w.event_type, w.cur, count(*), sum(w.amount),
       count(DISTINCT w.user_id), count(DISTINCT w.session), c.conversion_rate,
       m.avg_order_value, t.top_products
  FROM with_sessions w
  JOIN per_category c USING (cat)
  JOIN per_currency m USING (cat, cur)
  JOIN top t USING (cat, event_type, cur)
 GROUP BY w.cat, w.event_type, w.cur, c.conversion_rate, m.avg_order_value, t.top_products
ON CONFLICT (date, category, event_type, currency) DO UPDATE SET
    total_events = excluded.total_events, total_revenue = excluded.total_revenue,
    unique_users = excluded.unique_users, unique_sessions = excluded.unique_sessions,
    conversion_rate = excluded.conversion_rate, avg_order_value = excluded.avg_order_value,
    top_products = excluded.top_products, updated_at = now()
RETURNING category, event_type, currency
"""


def run_daily(conn: psycopg.Connection[Any], day: date) -> int:
    """Fill ``daily_aggregations`` for ``day``; returns the number of rows it holds."""
    with conn.transaction():
        written = conn.execute(_DAILY, {"day": day, "top": TOP_PRODUCTS}).fetchall()
        conn.execute(
            """DELETE FROM daily_aggregations
                WHERE date = %s AND (category, event_type, currency) NOT IN
                      (SELECT * FROM unnest(%s::text[], %s::text[], %s::text[]))""",
            (day, *([str(r[i]) for r in written] for i in range(3))),
        )
    return len(written)
