"""``shopstream batch customers``: RFM scores, named segments and customer value.

RFM scores are quintiles (5 = best: most recent, most frequent, highest spend). Segments
follow the usual recency x frequency map. Customer value is historical (revenue to date)
and predicted for the next 365 days: BG/NBD expected purchases x Gamma-Gamma expected order
value, with churn probability = 1 - P(alive). BTYD inputs use purchase *days*, as the models
assume one transaction per period.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any, Final, cast

import numpy as np
import numpy.typing as npt
import polars as pl
import psycopg
from psycopg import sql

from shopstream.analytics.clv import fit_bgnbd, fit_gamma_gamma
from shopstream.schema import GUEST_USER_PREFIX

HORIZON_DAYS: Final = 365
MIN_REPEAT_CUSTOMERS: Final = 20  # fewer: the models are not fitted, predictions stay NULL
# Checked in order; the first match names the segment (r, f are 1..5 scores).
SEGMENTS: Final = (
    ("Champions", pl.col("r_score").ge(4) & pl.col("f_score").ge(4)),
    ("Loyal", pl.col("r_score").ge(3) & pl.col("f_score").ge(3)),
    ("New Customers", pl.col("r_score").eq(5) & pl.col("f_score").eq(1)),
    ("Potential Loyalist", pl.col("r_score").ge(4)),
    ("Need Attention", pl.col("r_score").eq(3)),
    ("At Risk", pl.col("f_score").ge(3)),
    ("Hibernating", pl.col("r_score").eq(2)),
    ("Lost", pl.lit(value=True)),
)

# Customers who bought at least once; guest checkouts are not customers. Monetary value is
# net of refunds; recency and frequency count purchases only.
_PURCHASERS: Final = """
SELECT user_id,
       (min(event_timestamp AT TIME ZONE 'UTC') FILTER (WHERE event_type = 'purchase'))::date
           AS first_day,
       (max(event_timestamp AT TIME ZONE 'UTC') FILTER (WHERE event_type = 'purchase'))::date
           AS last_day,
       count(DISTINCT (event_timestamp AT TIME ZONE 'UTC')::date)
           FILTER (WHERE event_type = 'purchase') AS purchase_days,
       count(*) FILTER (WHERE event_type = 'purchase') AS frequency,
       sum(shopstream_net_amount(event_type, price, quantity))::float8 AS monetary
  FROM events
 WHERE event_type IN ('purchase', 'refund') AND NOT starts_with(user_id, %(guest)s)
 GROUP BY user_id
HAVING count(*) FILTER (WHERE event_type = 'purchase') > 0
"""
# Order value per purchase day, for Gamma-Gamma (which models what is spent, gross).
_DAY_VALUES: Final = """
SELECT user_id, (event_timestamp AT TIME ZONE 'UTC')::date AS day,
       sum(price * quantity)::float8 AS value
  FROM events
 WHERE event_type = 'purchase' AND NOT starts_with(user_id, %(guest)s)
 GROUP BY 1, 2
"""


def _quintile(column: str, *, descending: bool = False) -> pl.Expr:
    """1..5 by the quintile of each value's mid-rank: ties share a score, and a large tie
    (most customers bought yesterday) lands in the middle of the ranks it covers rather
    than at their bottom."""
    rank = pl.col(column).rank("average", descending=descending)
    return ((rank - 0.5) * 5 / pl.len()).floor().clip(0, 4).cast(pl.Int16) + 1


def score(customers: pl.DataFrame) -> pl.DataFrame:
    """RFM scores, the code and the segment name."""
    scored = customers.with_columns(
        _quintile("recency_days", descending=True).alias("r_score"),
        _quintile("frequency").alias("f_score"),
        _quintile("monetary").alias("m_score"),
    )
    segment: pl.Expr = pl.lit(None, dtype=pl.String)
    for name, rule in reversed(SEGMENTS):  # nested so that the first rule wins
        segment = pl.when(rule).then(pl.lit(name)).otherwise(segment)
    return scored.with_columns(
        pl.concat_str(
            pl.col("r_score").cast(pl.String),
            pl.col("f_score").cast(pl.String),
            pl.col("m_score").cast(pl.String),
        ).alias("rfm_score"),
        segment.alias("segment"),
    )


def run_customers(conn: psycopg.Connection[Any], reference: date | None = None) -> pl.DataFrame:
    """Rebuild ``customer_segments`` (one transaction); returns the segment sizes."""
    purchasers = pl.DataFrame(
        conn.execute(_PURCHASERS, {"guest": GUEST_USER_PREFIX}).fetchall(),
        schema=["user_id", "first_day", "last_day", "purchase_days", "frequency", "monetary"],
        orient="row",
    )
    if not purchasers.height:
        return pl.DataFrame(schema={"segment": pl.String, "customers": pl.UInt32})
    if reference is None:
        reference = cast(date, purchasers["last_day"].max()) + timedelta(days=1)
    days = pl.DataFrame(
        conn.execute(_DAY_VALUES, {"guest": GUEST_USER_PREFIX}).fetchall(),
        schema=["user_id", "day", "value"],
        orient="row",
    )
    repeat_value = (
        days.join(purchasers.select("user_id", "first_day"), on="user_id")
        .filter(pl.col("day") > pl.col("first_day"))
        .group_by("user_id")
        .agg(pl.col("value").mean().alias("repeat_value"))
    )
    customers = purchasers.join(repeat_value, on="user_id", how="left").with_columns(
        (pl.lit(reference) - pl.col("last_day")).dt.total_days().alias("recency_days"),
        (pl.col("purchase_days") - 1).alias("x"),
        (pl.col("last_day") - pl.col("first_day")).dt.total_days().cast(pl.Float64).alias("t_x"),
        (pl.lit(reference) - pl.col("first_day")).dt.total_days().cast(pl.Float64).alias("T"),
        pl.col("repeat_value").fill_null(0.0),
    )
    scored = score(customers).with_columns(_predictions(conn, customers, reference))
    with conn.transaction():
        conn.execute("DELETE FROM customer_segments")
        columns = (
            "user_id", "reference_date", "recency_days", "frequency", "monetary", "r_score",
            "f_score", "m_score", "rfm_score", "segment", "historical_clv",
            "repeat_purchase_days", "p_alive", "churn_probability", "expected_purchases_365d",
            "expected_order_value", "predicted_clv_365d",
        )  # fmt: skip
        frame = scored.with_columns(
            pl.lit(reference).alias("reference_date"),
            pl.col("monetary").round(2).alias("monetary"),
            pl.col("monetary").round(2).alias("historical_clv"),
            pl.col("x").alias("repeat_purchase_days"),
        ).select(columns)
        statement = sql.SQL("COPY customer_segments ({}) FROM STDIN (FORMAT csv)").format(
            sql.SQL(", ").join(map(sql.Identifier, columns))
        )
        with conn.cursor().copy(statement) as copy:
            copy.write(frame.write_csv(include_header=False, null_value=""))
    return scored.group_by("segment").agg(pl.len().alias("customers")).sort("segment")


def _predictions(
    conn: psycopg.Connection[Any], customers: pl.DataFrame, reference: date
) -> list[pl.Series]:
    x = customers["x"].to_numpy().astype(np.float64)
    t_x = customers["t_x"].to_numpy()
    big_t = customers["T"].to_numpy()
    m = customers["repeat_value"].to_numpy()
    empty = [
        pl.Series(name, [None] * customers.height, dtype=pl.Float64)
        for name in ("p_alive", "churn_probability", "expected_purchases_365d",
                     "expected_order_value", "predicted_clv_365d")
    ]  # fmt: skip
    if int(((x > 0) & (m > 0)).sum()) < MIN_REPEAT_CUSTOMERS:
        return empty
    purchases = fit_bgnbd(x, t_x, big_t)
    spend = fit_gamma_gamma(x, m)
    conn.execute(
        """INSERT INTO clv_models (reference_date, customers, bgnbd_r, bgnbd_alpha, bgnbd_a,
               bgnbd_b, gg_p, gg_q, gg_gamma) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)""",
        (reference, customers.height, purchases.r, purchases.alpha, purchases.a, purchases.b,
         spend.p, spend.q, spend.gamma),
    )  # fmt: skip
    alive = purchases.p_alive(x, t_x, big_t)
    expected = purchases.expected_purchases(HORIZON_DAYS, x, t_x, big_t)
    value = spend.expected_spend(x, m)
    return [
        _finite("p_alive", alive.round(6)),
        _finite("churn_probability", (1 - alive).round(6)),
        _finite("expected_purchases_365d", expected.round(4)),
        _finite("expected_order_value", value.round(2)),
        _finite("predicted_clv_365d", (expected * value).round(2)),
    ]


def _finite(name: str, values: npt.NDArray[np.float64]) -> pl.Series:
    """A prediction the models could not make (too little history for a stable fit) is
    NULL, never NaN or infinity."""
    return pl.Series(name, np.where(np.isfinite(values), values, np.nan)).fill_nan(None)
