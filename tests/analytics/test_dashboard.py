"""The dashboard's rollup queries against the same figures computed from ``events``."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import psycopg

from shopstream.analytics import dashboard
from tests.fixtures.analytics import NET_AMOUNT, SESSIONS_FROM_EVENTS, net
from tests.fixtures.cli import cli_env, generate_and_load

START, END = datetime(2026, 1, 1, 9, 30, tzinfo=UTC), datetime(2026, 1, 2, 17, 1, tzinfo=UTC)
DAY_FROM, DAY_TO = date(2026, 1, 1), date(2026, 1, 2)


def test_dashboard_figures_equal_plain_sql_over_events(tmp_path: Path, database_url: str) -> None:
    env = cli_env(database_url, tmp_path / "home")
    generate_and_load(
        tmp_path / "in", "--events", "30000", "--days", "3", "--seed", "5", "--format",
        "canonical", "--late", "0.05", "--duplicates", "0.02", env=env,
    )  # fmt: skip
    window = {"start": START, "end": END}
    with psycopg.connect(database_url) as conn:
        kpis = dashboard.kpis(conn, START, END)
        row = conn.execute(
            f"""SELECT sum({NET_AMOUNT}), count(*) FILTER (WHERE event_type = 'purchase'),
                       count(*), count(DISTINCT user_id),
                       count(DISTINCT user_id) FILTER (WHERE event_type = 'purchase')
                  FROM events WHERE event_timestamp >= %(start)s AND event_timestamp < %(end)s""",
            window,
        ).fetchone()
        assert row is not None
        revenue, orders, events, active, buyers = row
        assert orders > 0 and active > buyers > 0
        assert kpis == dashboard.Kpis(
            revenue=revenue,
            currency="USD",
            revenue_by_currency=(dashboard.Money("USD", revenue, orders, None),),
            revenue_note=None,
            orders=orders,
            average_order_value=round(revenue / orders, 2),
            conversion_rate=round(buyers / active, 4),
            active_users=active,
            events=events,
        )

        series = dashboard.revenue_series(conn, START, END, grain="hour")
        expected = conn.execute(
            f"""SELECT date_trunc('hour', event_timestamp, 'UTC'), coalesce(category, 'unknown'),
                       sum({NET_AMOUNT}), count(*) FILTER (WHERE event_type = 'purchase'),
                       count(*)
                  FROM events WHERE event_timestamp >= %(start)s AND event_timestamp < %(end)s
                 GROUP BY 1, 2 ORDER BY 1, 2""",
            window,
        ).fetchall()
        assert [
            (r["window_start"], r["category"], r["revenue"], r["orders"], r["events"])
            for r in series
        ] == expected
        assert {r["currency"] for r in series} == {"USD"}

        top = dashboard.top_products(conn, DAY_FROM, DAY_TO, limit=10)
        expected = conn.execute(
            f"""SELECT product_id, sum({NET_AMOUNT}) AS revenue FROM events
                 WHERE (event_timestamp AT TIME ZONE 'UTC')::date BETWEEN %s AND %s
                 GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 10""",
            (DAY_FROM, DAY_TO),
        ).fetchall()
        assert [(r["product_id"], r["revenue"]) for r in top] == expected

        funnel = dashboard.funnel(conn, DAY_FROM, DAY_TO)
        expected = conn.execute(
            f"""SELECT coalesce(ec, 'unknown'), count(*), count(*) FILTER (WHERE v > 0),
                       count(*) FILTER (WHERE c > 0), count(*) FILTER (WHERE p > 0),
                       round(count(*) FILTER (WHERE v > 0 AND c > 0)::numeric
                             / nullif(count(*) FILTER (WHERE v > 0), 0), 4)
                  FROM ({net(SESSIONS_FROM_EVENTS)}) AS s(u, st, en, n, v, c, p, f, r, ep, ec)
                 WHERE (st AT TIME ZONE 'UTC')::date BETWEEN %s AND %s
                 GROUP BY 1 ORDER BY 1""",
            (DAY_FROM, DAY_TO),
        ).fetchall()
        assert len(expected) > 1  # several categories
        assert [
            (
                r["category"], r["sessions"], r["sessions_with_view"], r["sessions_with_cart"],
                r["sessions_with_purchase"], r["view_to_cart"],
            )
            for r in funnel
        ] == expected  # fmt: skip
        strict = dashboard.funnel(conn, DAY_FROM, DAY_TO, strict=True)
        assert [r["category"] for r in strict] == [r[0] for r in expected]
        assert all(
            s["sessions_view_cart_purchase"] <= a["sessions_with_purchase"]
            for s, a in zip(strict, funnel, strict=True)
        )
        assert isinstance(kpis.revenue, Decimal)
