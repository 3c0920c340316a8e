"""Fold a batch's inserted events into the live rollups, inside the batch transaction.

Deltas are computed with Polars from exactly the rows the loader just inserted (never from
duplicates or replays), whatever engine produced them, then merged with one upsert per
table. Every measure is additive, so arrival order does not matter.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Final

import polars as pl
import psycopg
from psycopg import sql

from shopstream.schema import GUEST_USER_PREFIX, NO_CURRENCY, PRODUCT_EVENT_TYPES, EventType

UNKNOWN_CATEGORY: Final = "unknown"
_CANONICAL: Final = [t.value for t in EventType]
_PRODUCT_TYPES: Final = [t.value for t in PRODUCT_EVENT_TYPES]
_PURCHASE: Final = "purchase"
_REFUND: Final = "refund"
# Column counting each event type, in product_analytics and user_sessions alike.
TYPE_COUNTS: Final = {
    "views": "view",
    "add_to_cart": "add_to_cart",
    "remove_from_cart": "remove_from_cart",
    "wishlist": "add_to_wishlist",
    "purchases": "purchase",
    "refunds": "refund",
}


def user_hash(user_id: str) -> int:
    """Stable signed 64-bit hash of a user id (the same in every process and engine)."""
    digest = hashlib.blake2b(user_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def with_measures(events: pl.DataFrame) -> pl.DataFrame:
    """The per-event measures every rollup and session sums, computed once per batch:
    ``_user`` (stable user hash), ``_purchase``, ``_refund``, the net ``_units`` and
    ``_cents`` (a purchase adds its units and amount, a refund subtracts them), and the
    ``_currency`` its money counts in (money is never added across currencies)."""
    kind = pl.col("event_type")
    sign = pl.when(kind == _PURCHASE).then(1).when(kind == _REFUND).then(-1).otherwise(0)
    units = sign * pl.col("quantity").fill_null(1)
    users = events["user_id"].unique()
    hashes = pl.DataFrame(
        {"user_id": users, "_user": [user_hash(u) for u in users.to_list()]},
        schema={"user_id": pl.String, "_user": pl.Int64},
    )
    return events.join(hashes, on="user_id", how="left", maintain_order="left").with_columns(
        (kind == _PURCHASE).cast(pl.Int64).alias("_purchase"),
        (kind == _REFUND).cast(pl.Int64).alias("_refund"),
        units.cast(pl.Int64).alias("_units"),
        # Cents as integers: sums stay exact, as numeric(…, 2) in the database.
        ((pl.col("price").fill_null(0) * 100).round(0).cast(pl.Int64) * units).alias("_cents"),
        pl.col("currency").fill_null(NO_CURRENCY).alias("_currency"),
    )


# The delta functions take events already passed through :func:`with_measures`.


def realtime_deltas(events: pl.DataFrame) -> pl.DataFrame:
    """Per 1-minute window, category, event type and currency: counts, money and the
    user-hash set. Canonical types only: custom types live in events and sessions, not
    commerce rollups."""
    return (
        events.filter(pl.col("event_type").is_in(_CANONICAL))
        .with_columns(
            pl.col("event_timestamp").dt.truncate("1m").alias("window_start"),
            pl.col("category").fill_null(UNKNOWN_CATEGORY),
        )
        .group_by("window_start", "category", "event_type", pl.col("_currency").alias("currency"))
        .agg(
            pl.len().alias("events"),
            pl.col("_units").sum().alias("units"),
            pl.col("_cents").sum().alias("cents"),
            pl.col("_purchase").sum().alias("purchases"),
            pl.col("_user").unique().sort().alias("user_hashes"),
        )
    )


def product_deltas(events: pl.DataFrame) -> pl.DataFrame:
    """Per day, product and currency, for product events (a page view or search names
    none)."""
    kind = pl.col("event_type")
    return (
        events.filter(kind.is_in(_PRODUCT_TYPES) & pl.col("product_id").is_not_null())
        .with_columns(pl.col("event_timestamp").dt.date().alias("day"))
        .group_by("day", "product_id", pl.col("_currency").alias("currency"))
        .agg(
            *((kind == value).sum().alias(name) for name, value in TYPE_COUNTS.items()),
            pl.col("_units").sum().alias("units"),
            pl.col("_cents").sum().alias("cents"),
        )
    )


def _amount_text(cents: pl.Expr) -> pl.Expr:
    """Exact decimal text of an amount in cents (``-1205`` is ``-12.05``)."""
    whole = cents.abs() // 100
    return pl.concat_str(
        pl.when(cents < 0).then(pl.lit("-")).otherwise(pl.lit("")),
        whole.cast(pl.String),
        pl.lit("."),
        (cents.abs() % 100).cast(pl.String).str.zfill(2),
    )


def customer_deltas(events: pl.DataFrame) -> pl.DataFrame:
    """Per customer; guest checkouts are not customers. Their money per currency goes in
    ``money``, a JSON object by currency code (``currency_code`` admits only three capital
    letters, so the codes need no escaping); ``cents`` is their net revenue while it is
    in one currency, NULL when the batch holds several."""
    purchase = pl.col("event_type") == _PURCHASE
    customers = events.filter(~pl.col("user_id").str.starts_with(GUEST_USER_PREFIX))
    money = (
        customers.filter((pl.col("_purchase") + pl.col("_refund")) > 0)
        .group_by("user_id", "_currency")
        .agg(pl.col("_cents").sum())
        .sort("user_id", "_currency")
        .group_by("user_id", maintain_order=True)
        .agg(
            pl.concat_str(pl.lit('"'), "_currency", pl.lit('":'), _amount_text(pl.col("_cents")))
            .str.join(",")
            .alias("money"),
            pl.len().alias("_currencies"),
        )
    )
    return (
        customers.group_by("user_id")
        .agg(
            pl.col("event_timestamp").min().alias("first_seen"),
            pl.col("event_timestamp").max().alias("last_seen"),
            pl.len().alias("events"),
            pl.col("_purchase").sum().alias("orders"),
            pl.col("_refund").sum().alias("refunds"),
            pl.col("_units").sum().alias("units"),
            pl.col("_cents").sum().alias("cents"),
            pl.col("event_timestamp").filter(purchase).max().alias("last_purchase"),
        )
        .join(money, on="user_id", how="left")
        .with_columns(
            pl.when(pl.col("_currencies").fill_null(0) <= 1).then(pl.col("cents")),
            pl.concat_str(pl.lit("{"), pl.col("money").fill_null(""), pl.lit("}")).alias("money"),
        )
        .drop("_currencies")
    )


# -- upserts -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Rollup:
    """A delta frame's staging table (session-local) and its merge into the rollup table."""

    table: str
    stage: str
    columns: str  # staging table definition
    merge: str  # INSERT … SELECT FROM the stage … ON CONFLICT DO UPDATE
    deltas: Callable[[pl.DataFrame], pl.DataFrame]

    def staged(self, frame: pl.DataFrame) -> StagedDelta:
        """The delta as COPY input: lists become PostgreSQL array literals, the rest CSV."""
        frame = frame.with_columns(
            pl.concat_str(
                pl.lit("{"), pl.col(name).cast(pl.List(pl.String)).list.join(","), pl.lit("}")
            ).alias(name)
            for name, dtype in frame.schema.items()
            if isinstance(dtype, pl.List)
        )
        payload = frame.write_csv(
            include_header=False, datetime_format="%Y-%m-%d %H:%M:%S%.6f", null_value=""
        )
        return StagedDelta(tuple(frame.columns), frame.height, payload)


@dataclass(frozen=True, slots=True)
class StagedDelta:
    """One rollup's delta, serialised ahead (in the parser thread) for the loader's COPY."""

    columns: tuple[str, ...]
    rows: int
    payload: str


_NO_DELTA: Final = StagedDelta((), 0, "")


def rollup_deltas(
    measured: pl.DataFrame, tables: Collection[str] | None = None
) -> list[StagedDelta]:
    """Every rollup's delta, ready to COPY (same order as _ROLLUPS), from events passed
    through :func:`with_measures`; with ``tables``, the others' deltas are left empty."""
    return [
        rollup.staged(rollup.deltas(measured))
        if tables is None or rollup.table in tables
        else _NO_DELTA
        for rollup in _ROLLUPS
    ]


def create_stages(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    """The session's staging tables for the deltas; once per connection."""
    stages = [(rollup.stage, rollup.columns) for rollup in _ROLLUPS]
    for stage, columns in [*stages, (_SESSION_COUNTS, "user_id text, sessions bigint")]:
        conn.execute(
            sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} ({}) ON COMMIT DELETE ROWS").format(
                sql.Identifier(stage), sql.SQL(columns)
            )
        )


def write_rollups(
    conn: psycopg.Connection[tuple[object, ...]],
    deltas: list[StagedDelta],
    session_counts: pl.DataFrame,
) -> None:
    """Merge deltas (from :func:`rollup_deltas`) into the rollup tables, through the
    staging tables of :func:`create_stages`; ``session_counts`` (user_id, sessions) are
    the customers' changes in session count."""
    if session_counts.height:
        statement = sql.SQL("COPY {} FROM STDIN (FORMAT csv)").format(
            sql.Identifier(_SESSION_COUNTS)
        )
        with conn.cursor().copy(statement) as copy:
            copy.write(session_counts.select("user_id", "sessions").write_csv(include_header=False))
    for rollup, delta in zip(_ROLLUPS, deltas, strict=True):
        if not delta.rows:
            continue
        statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(
            sql.Identifier(rollup.stage), sql.SQL(", ").join(map(sql.Identifier, delta.columns))
        )
        with conn.cursor().copy(statement) as copy:
            copy.write(delta.payload)
        conn.execute(sql.SQL(rollup.merge))


_SESSION_COUNTS: Final = "stage_session_counts"
_ROLLUPS: Final = (
    _Rollup(
        table="realtime_metrics",
        stage="stage_realtime",
        columns="""window_start timestamp, category text, event_type text, currency text,
                   events bigint, units bigint, cents bigint, purchases bigint,
                   user_hashes bigint[]""",
        # Sorted keys: concurrent writers lock rows in the same order, never deadlock.
        merge="""INSERT INTO realtime_metrics AS m (window_start, category, event_type, currency,
                     events, units, revenue, purchases, user_hashes)
                 SELECT window_start AT TIME ZONE 'UTC', category, event_type, currency, events,
                        units, cents::numeric / 100, purchases, user_hashes
                   FROM stage_realtime ORDER BY 1, 2, 3, 4
                 ON CONFLICT (window_start, category, event_type, currency) DO UPDATE SET
                     events = m.events + excluded.events,
                     units = m.units + excluded.units,
                     revenue = m.revenue + excluded.revenue,
                     purchases = m.purchases + excluded.purchases,
                     user_hashes = shopstream_union_hashes(m.user_hashes, excluded.user_hashes),
                     updated_at = now()""",
        deltas=realtime_deltas,
    ),
    _Rollup(
        table="product_analytics",
        stage="stage_products",
        columns="""day date, product_id text, currency text, views bigint, add_to_cart bigint,
                   remove_from_cart bigint, wishlist bigint, purchases bigint, refunds bigint,
                   units bigint, cents bigint""",
        merge="""INSERT INTO product_analytics AS p (day, product_id, currency, views,
                     add_to_cart, remove_from_cart, wishlist, purchases, refunds, units, revenue)
                 SELECT day, product_id, currency, views, add_to_cart, remove_from_cart,
                        wishlist, purchases, refunds, units, cents::numeric / 100
                   FROM stage_products ORDER BY 1, 2, 3
                 ON CONFLICT (day, product_id, currency) DO UPDATE SET
                     views = p.views + excluded.views,
                     add_to_cart = p.add_to_cart + excluded.add_to_cart,
                     remove_from_cart = p.remove_from_cart + excluded.remove_from_cart,
                     wishlist = p.wishlist + excluded.wishlist,
                     purchases = p.purchases + excluded.purchases,
                     refunds = p.refunds + excluded.refunds,
                     units = p.units + excluded.units,
                     revenue = p.revenue + excluded.revenue,
                     updated_at = now()""",
        deltas=product_deltas,
    ),
    _Rollup(
        table="customer_metrics",
        stage="stage_customers",
        columns="""user_id text, first_seen timestamp, last_seen timestamp, events bigint,
                   orders bigint, refunds bigint, units bigint, cents bigint,
                   last_purchase timestamp, money jsonb""",
        merge="""INSERT INTO customer_metrics AS c (user_id, first_seen, last_seen, events,
                     sessions, orders, refunds, units, revenue, last_purchase,
                     revenue_by_currency)
                 SELECT user_id, first_seen AT TIME ZONE 'UTC', last_seen AT TIME ZONE 'UTC',
                        events, coalesce(n.sessions, 0), orders, refunds, units,
                        cents::numeric / 100, last_purchase AT TIME ZONE 'UTC', money
                   FROM stage_customers LEFT JOIN stage_session_counts n USING (user_id)
                  ORDER BY 1
                 ON CONFLICT (user_id) DO UPDATE SET
                     first_seen = least(c.first_seen, excluded.first_seen),
                     last_seen = greatest(c.last_seen, excluded.last_seen),
                     events = c.events + excluded.events,
                     sessions = c.sessions + excluded.sessions,
                     orders = c.orders + excluded.orders,
                     refunds = c.refunds + excluded.refunds,
                     units = c.units + excluded.units,
                     -- One currency on both sides: the single figure adds up (NULL stays).
                     revenue = CASE WHEN c.revenue_by_currency = '{}'
                                      OR excluded.revenue_by_currency = '{}'
                                      OR c.revenue_by_currency ?& ARRAY(SELECT jsonb_object_keys(
                                             excluded.revenue_by_currency))
                                    THEN c.revenue + excluded.revenue END,
                     revenue_by_currency = CASE WHEN excluded.revenue_by_currency = '{}'
                                                THEN c.revenue_by_currency
                                                ELSE shopstream_add_money(
                                                    c.revenue_by_currency,
                                                    excluded.revenue_by_currency) END,
                     last_purchase = greatest(c.last_purchase, excluded.last_purchase),
                     updated_at = now()""",
        deltas=customer_deltas,
    ),
)
