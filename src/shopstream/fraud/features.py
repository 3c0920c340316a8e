"""What the fraud rules see: each order's features, computed by PostgreSQL in the batch
transaction from ``fraud_activity`` (orders, refunds and logins with their context).

An order looks back only: at activity that happened before it (in event time) and has
arrived by the time it is scored, its own batch included. So however a time-ordered stream
is cut into batches, every order sees the same past and gets the same score; within a
batch arrival order does not matter at all.
"""

from __future__ import annotations

from typing import Any, Final

import polars as pl
import psycopg
from psycopg import sql

# Event types kept as fraud state; the first two are scored. Orders are counted by
# order_id (one order has a purchase event per line), else each event is an order.
SCORED_TYPES: Final = ("purchase", "refund")
ACTIVITY_TYPES: Final = (*SCORED_TYPES, "login")

ACTIVITY_COLUMNS: Final = (
    "event_id",
    "event_type",
    "event_timestamp",
    "user_id",
    "order_key",
    "ip_address",
    "device",
    "payment_method",
    "country",
    "amount",
    "batch_id",
)

# Bounds on what one order reads, whatever the data: the latest rows of an IP, device or
# card within the hour (counts saturate here), and of the customer's own activity.
SHARED_ROWS: Final = 200
HISTORY_ROWS: Final = 500

# The model's inputs: numeric features, NULL read as 0.
MODEL_FEATURES: Final = (
    "log_amount",
    "amount_z",
    "user_orders_1h",
    "user_orders_24h",
    "ip_orders_1h",
    "device_orders_1h",
    "payment_orders_1h",
    "ip_small_accounts_10m",
    "device_small_accounts_10m",
    "new_device_number",
    "new_country_number",
)


# An order moment: the lines of one order placed (or refunded) together by one customer.
ORDER_MOMENT: Final = ("user_id", "order_key", "event_type", "event_timestamp")


def copy_rows(
    conn: psycopg.Connection[Any],
    table: sql.Identifier,
    columns: tuple[str, ...],
    frame: pl.DataFrame,
) -> None:
    """``frame``'s ``columns`` into ``table`` by one COPY."""
    payload = frame.select(columns).write_csv(
        include_header=False, datetime_format="%Y-%m-%d %H:%M:%S%.6f", null_value=""
    )
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(
        table, sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    with conn.cursor().copy(statement) as copy:
        copy.write(payload)


def order_lines(events: pl.DataFrame) -> pl.DataFrame:
    """The batch's inserted events that are fraud state, one row each."""
    kind = pl.col("event_type")
    return events.filter(kind.is_in(ACTIVITY_TYPES)).select(
        "event_id",
        "event_type",
        "event_timestamp",
        "user_id",
        pl.coalesce("order_id", "event_id").alias("order_key"),
        "ip_address",
        pl.col("user_agent").alias("device"),
        "payment_method",
        "country",
        pl.when(kind.is_in(SCORED_TYPES))
        .then((pl.col("price") * pl.col("quantity").fill_null(1)).round(2))
        .alias("amount"),
    )


def activity(lines: pl.DataFrame, batch_id: int) -> pl.DataFrame:
    """``fraud_activity`` rows: one per order moment (an invoice of 40 lines is one order
    of its total amount, and one look-back), named by its first line's event id."""
    return (
        lines.sort("event_id")
        .group_by(ORDER_MOMENT, maintain_order=True)
        .agg(
            pl.col("event_id").first(),
            pl.col("ip_address", "device", "payment_method", "country").first(),
            pl.col("amount").sum().round(2),
        )
        .with_columns(
            pl.when(pl.col("event_type").is_in(SCORED_TYPES)).then(pl.col("amount")),
            pl.lit(batch_id, dtype=pl.Int64).alias("batch_id"),
        )
        .select(ACTIVITY_COLUMNS)
    )


# The features are read on a connection of the scorer's own (see score.FeatureReader),
# which cannot see the batch's uncommitted activity: the batch's rows go into a temporary
# table of that connection, read together with the committed ones.
BATCH_ACTIVITY: Final = sql.Identifier("shopstream_batch_activity")
_ACTIVITY: Final = sql.SQL("(SELECT * FROM fraud_activity UNION ALL SELECT * FROM {})").format(
    BATCH_ACTIVITY
)
_BATCH_TABLE: Final = (
    sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} (LIKE fraud_activity INCLUDING DEFAULTS)").format(
        BATCH_ACTIVITY
    ),
    *(
        sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} ({}, event_timestamp)").format(
            sql.Identifier(f"shopstream_batch_activity_{column}"),
            BATCH_ACTIVITY,
            sql.Identifier(column),
        )
        for column in ("user_id", "ip_address", "device", "payment_method")
    ),
)


# A shared IP, device or card (an office NAT, a common browser string) is read for its
# latest rows only: the counts saturate there, the rules need far fewer.
_SHARED_LOOKBACK: Final = """
  CROSS JOIN LATERAL (
      SELECT count(DISTINCT x.order_key) FILTER (WHERE x.event_type = 'purchase')
                 AS orders_1h,
             count(DISTINCT x.user_id) FILTER (
                 WHERE x.event_type = 'purchase' AND x.amount <= %(small)s
                   AND x.event_timestamp > o.event_timestamp - interval '10 minutes')
                 AS small_accounts
        FROM (SELECT a.order_key, a.event_type, a.user_id, a.amount, a.event_timestamp
                FROM {activity} a
               WHERE a.{column} = o.{column}
                 AND a.event_timestamp > o.event_timestamp - interval '1 hour'
                 AND (a.event_timestamp, a.event_id) <= (o.event_timestamp, o.event_id)
               ORDER BY a.event_timestamp DESC LIMIT %(shared_rows)s) AS x
  ) {alias}
"""
_FEATURES: Final = sql.Composed(
    [
        sql.SQL("""
SELECT o.event_id::text AS representative, u.orders_10m AS user_orders_10m,
       u.orders_1h AS user_orders_1h, u.orders_24h AS user_orders_24h, u.refunds_24h,
       u.prior_orders, u.prior_refunds, u.prior_activity, u.log_amounts, u.device_since,
       u.country_since, u.first_seen, u.previous_country,
       (extract(epoch FROM o.event_timestamp - u.previous_at) / 60)::float8
           AS minutes_since_previous,
       i.orders_1h AS ip_orders_1h, i.small_accounts AS ip_small_accounts_10m,
       d.orders_1h AS device_orders_1h, d.small_accounts AS device_small_accounts_10m,
       c.orders_1h AS payment_orders_1h
  -- The batch's orders, from its own activity (see order_features).
  FROM {batch} o
  -- The customer, in one index range scan over their latest activity: windows end at
  -- the order, itself included; history is strictly before it, other orders only.
  CROSS JOIN LATERAL (
      SELECT count(DISTINCT a.order_key) FILTER (WHERE a.event_type = 'purchase'
                 AND a.event_timestamp > o.event_timestamp - interval '10 minutes') AS orders_10m,
             count(DISTINCT a.order_key) FILTER (WHERE a.event_type = 'purchase'
                 AND a.event_timestamp > o.event_timestamp - interval '1 hour') AS orders_1h,
             count(DISTINCT a.order_key) FILTER (WHERE a.event_type = 'purchase'
                 AND a.event_timestamp > o.event_timestamp - interval '24 hours') AS orders_24h,
             count(DISTINCT a.order_key) FILTER (WHERE a.event_type = 'refund'
                 AND a.event_timestamp > o.event_timestamp - interval '24 hours') AS refunds_24h,
             count(DISTINCT a.order_key) FILTER (WHERE a.event_type = 'purchase'
                 AND a.order_key <> o.order_key) AS prior_orders,
             count(*) FILTER (WHERE a.event_type = 'refund'
                 AND a.order_key <> o.order_key) AS prior_refunds,
             count(*) FILTER (WHERE a.order_key <> o.order_key)
                 AS prior_activity,
             min(a.event_timestamp) FILTER (WHERE a.order_key <> o.order_key
                ) AS first_seen,
             min(a.event_timestamp) FILTER (WHERE a.device = o.device
                 AND a.order_key <> o.order_key) AS device_since,
             min(a.event_timestamp) FILTER (WHERE a.country = o.country
                 AND a.order_key <> o.order_key) AS country_since,
             array_agg(ln(a.amount)) FILTER (WHERE a.event_type = 'purchase' AND a.amount > 0
                 AND a.order_key <> o.order_key) AS log_amounts,
             max(a.event_timestamp) FILTER (WHERE a.order_key <> o.order_key) AS previous_at,
             (array_agg(a.country ORDER BY a.event_timestamp DESC, a.event_id DESC)
                 FILTER (WHERE a.order_key <> o.order_key))[1] AS previous_country
        FROM (SELECT * FROM {activity} h
               WHERE h.user_id = o.user_id
                 AND (h.event_timestamp, h.event_id) <= (o.event_timestamp, o.event_id)
               ORDER BY h.event_timestamp DESC LIMIT %(history_rows)s) AS a
  ) u
""").format(batch=BATCH_ACTIVITY, activity=_ACTIVITY),
        *(
            sql.SQL(_SHARED_LOOKBACK).format(
                column=sql.Identifier(column), alias=sql.SQL(alias), activity=_ACTIVITY
            )
            for column, alias in (("ip_address", "i"), ("device", "d"), ("payment_method", "c"))
        ),
        sql.SQL(" WHERE o.event_type IN ('purchase', 'refund')"),
    ]
)


def prepare_feature_connection(conn: psycopg.Connection[Any]) -> None:
    """Once per connection :func:`order_features` reads on: UTC, as on the loader's
    connection (the batch's rows travel as UTC wall-clock times), and the indexed
    temporary table the batch's rows are handed over in."""
    conn.execute("SET TIME ZONE 'UTC'")
    for statement in _BATCH_TABLE:
        conn.execute(statement)


def order_features(
    conn: psycopg.Connection[Any],
    activity_rows: pl.DataFrame,
    lines: pl.DataFrame,
    small_amount: float,
) -> pl.DataFrame:
    """Features of each scored line: its order moment's, amount included, read on ``conn``
    (prepared by :func:`prepare_feature_connection`), a connection that sees every earlier
    batch's committed activity but not this batch's (``activity_rows``, its
    ``fraud_activity`` rows, which it is given). Which lines share a batch changes
    nothing."""
    conn.execute(sql.SQL("TRUNCATE {}").format(BATCH_ACTIVITY))
    copy_rows(conn, BATCH_ACTIVITY, ACTIVITY_COLUMNS, activity_rows)
    conn.execute(sql.SQL("ANALYZE {}").format(BATCH_ACTIVITY))
    params = {"small": small_amount, "shared_rows": SHARED_ROWS, "history_rows": HISTORY_ROWS}
    looked_back = pl.DataFrame(
        conn.execute(_FEATURES, params).fetchall(), schema=_RAW_SCHEMA, orient="row"
    )
    orders = activity_rows.filter(pl.col("event_type").is_in(SCORED_TYPES))
    moments = orders.select(
        *ORDER_MOMENT,
        "country",
        pl.col("event_id").alias("representative"),
        pl.col("amount").cast(pl.Float64),
    )
    joined = (
        lines.filter(pl.col("event_type").is_in(SCORED_TYPES))
        .select("event_id", *ORDER_MOMENT)
        .join(moments, on=list(ORDER_MOMENT), how="left")
        .join(looked_back, on="representative", how="left")
        .with_columns(pl.col("event_timestamp").dt.replace_time_zone("UTC"))
    )
    return derived_features(joined.drop("representative", "order_key"))


_MOMENT: Final = pl.Datetime("us", "UTC")
_RAW_SCHEMA: Final[dict[str, pl.DataType]] = {
    "representative": pl.String(),
    "user_orders_10m": pl.Int64(),
    "user_orders_1h": pl.Int64(),
    "user_orders_24h": pl.Int64(),
    "refunds_24h": pl.Int64(),
    "prior_orders": pl.Int64(),
    "prior_refunds": pl.Int64(),
    "prior_activity": pl.Int64(),
    "log_amounts": pl.List(pl.Float64()),
    "device_since": _MOMENT,
    "country_since": _MOMENT,
    "first_seen": _MOMENT,
    "previous_country": pl.String(),
    "minutes_since_previous": pl.Float64(),
    "ip_orders_1h": pl.Int64(),
    "ip_small_accounts_10m": pl.Int64(),
    "device_orders_1h": pl.Int64(),
    "device_small_accounts_10m": pl.Int64(),
    "payment_orders_1h": pl.Int64(),
}


def derived_features(raw: pl.DataFrame) -> pl.DataFrame:
    """Ratios and flags the rules and the model read, from the database's counts. A device
    or country is new when the customer, known for over an hour, first used it within the
    last hour (an account takeover logs in from it just before ordering)."""
    amount = pl.col("amount")
    history = pl.col("log_amounts")
    median = history.list.median()
    mad = history.list.eval((pl.element() - pl.element().median()).abs().median()).list.first()
    spread = mad.fill_null(0.0) * 1.4826 + 0.1
    recent = pl.col("event_timestamp") - pl.duration(hours=1)
    older_history = pl.col("first_seen").is_not_null() & (pl.col("first_seen") < recent)
    new_device = older_history & (
        pl.col("device_since").is_null() | (pl.col("device_since") >= recent)
    )
    new_country = older_history & (
        pl.col("country_since").is_null() | (pl.col("country_since") >= recent)
    )
    return raw.with_columns(
        amount.log().alias("log_amount"),
        ((amount.log() - median) / spread).alias("amount_z"),
        (amount / median.exp()).alias("amount_ratio"),
        new_device.alias("new_device"),
        new_country.alias("new_country"),
        new_device.cast(pl.Float64).alias("new_device_number"),
        new_country.cast(pl.Float64).alias("new_country_number"),
    ).drop("log_amounts")
