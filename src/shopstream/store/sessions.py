"""Sessions, kept equal to a from-scratch sessionization whatever the arrival order.

An event with a ``session_id`` belongs to that session. Without one, a user's session ends
when more than 30 minutes pass between consecutive events (as product-analytics tools do).
Adding events can only join sessions, never split them: a batch's own sessions are merged
with the stored sessions of the same user that lie within 30 minutes of them, and the
merged rows replace the old ones. Per-user advisory locks keep concurrent writers apart.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Final

import polars as pl
import psycopg
from psycopg import sql

from shopstream.store.rollups import TYPE_COUNTS, UNKNOWN_CATEGORY

SESSION_GAP: Final = timedelta(minutes=30)
_LOCK_CLASS: Final = 0x5E55  # advisory-lock namespace for session maintenance
_LOCK_BUCKETS: Final = 256  # few locks per transaction, whatever the batch
_NO_SESSION_COUNTS: Final = pl.DataFrame(schema={"user_id": pl.String, "sessions": pl.Int64})
SESSION_COLUMNS: Final = (
    "session_key",
    "user_id",
    "source_session_id",
    "session_start",
    "session_end",
    "events",
    *TYPE_COUNTS,
    "revenue_cents",
    "entry_event_id",
    "entry_product",
    "entry_category",
)


def _gap_starts(start: pl.Expr, reach: pl.Expr) -> pl.Expr:
    """Where a new gap-based session begins, on rows sorted by user then time: at a new
    user, or when ``start`` lies more than 30 minutes past ``reach`` (how far the user's
    earlier rows extend)."""
    user = pl.col("user_id")
    return ((user != user.shift(1)) | (start > reach + SESSION_GAP)).fill_null(value=True)


def _gap_key() -> pl.Expr:
    """A gap-based session's key: its user and start, stable however it was assembled."""
    start = pl.col("session_start").dt.strftime("%Y-%m-%dT%H:%M:%S%.6f")
    return pl.concat_str(pl.col("user_id"), pl.lit("@"), start).alias("session_key")


def merge_sessions(parts: pl.DataFrame) -> pl.DataFrame:
    """Combine session summaries that are one session: same source id, or (without one)
    the same user with at most 30 minutes between one's end and the next one's start.

    Parts are sorted once by time and entry event, so every session's entry is simply
    its first part."""
    order = ("session_start", "entry_event_id")
    combine = (
        pl.col("source_session_id").first(),
        pl.col("session_start").first(),
        pl.col("session_end").max(),
        pl.col("events").sum(),
        *(pl.col(name).sum() for name in TYPE_COUNTS),
        pl.col("revenue_cents").sum(),
        pl.col("entry_event_id").first(),
        pl.col("entry_product").first(),
        pl.col("entry_category").first(),
    )
    keyed = parts.filter(pl.col("source_session_id").is_not_null())
    by_id = (
        keyed.sort("source_session_id", *order)
        .group_by(pl.col("source_session_id").alias("session_key"), maintain_order=True)
        .agg(pl.col("user_id").min(), *combine)
    )
    gapped = parts.filter(pl.col("source_session_id").is_null()).sort("user_id", *order)
    reach = pl.col("session_end").cum_max().over("user_id").shift(1)
    by_gap = (
        gapped.with_columns(_gap_starts(pl.col("session_start"), reach).cum_sum().alias("_n"))
        .group_by("_n", maintain_order=True)
        .agg(pl.col("user_id").first(), *combine)
        .with_columns(_gap_key())
    )
    return pl.concat([by_id.select(SESSION_COLUMNS), by_gap.select(SESSION_COLUMNS)])


def batch_sessions(events: pl.DataFrame) -> pl.DataFrame:
    """A batch's own sessions (events passed through ``rollups.with_measures``): by
    session id, and gap-based per user for the rest.

    Events are sorted once by time and event id, so a session's entry event is its first
    row and its rows need no further ordering."""
    order = ("event_timestamp", "event_id")
    summary = (
        pl.col("event_timestamp").first().alias("session_start"),
        pl.col("event_timestamp").last().alias("session_end"),
        pl.len().alias("events"),
        *((pl.col("event_type") == t).sum().alias(name) for name, t in TYPE_COUNTS.items()),
        pl.col("_cents").sum().alias("revenue_cents"),
        pl.col("event_id").first().alias("entry_event_id"),
        pl.col("product_id").first().alias("entry_product"),
        pl.col("category").first().alias("entry_category"),
    )
    by_id = (
        events.filter(pl.col("session_id").is_not_null())
        .sort("session_id", *order)
        .group_by("session_id", maintain_order=True)
        .agg(pl.col("user_id").min(), *summary)
        .with_columns(
            pl.col("session_id").alias("session_key"),
            pl.col("session_id").alias("source_session_id"),
        )
    )
    time = pl.col("event_timestamp")
    by_gap = (
        events.filter(pl.col("session_id").is_null())
        .sort("user_id", *order)
        .with_columns(_gap_starts(time, time.shift(1)).cum_sum().alias("_n"))
        .group_by("_n", maintain_order=True)
        .agg(pl.col("user_id").first(), *summary)
        .with_columns(_gap_key(), pl.lit(None, dtype=pl.String).alias("source_session_id"))
    )
    return pl.concat([by_id.select(SESSION_COLUMNS), by_gap.select(SESSION_COLUMNS)])


def _merged_with(local: pl.DataFrame, stored: pl.DataFrame) -> pl.DataFrame:
    """The batch's sessions with the stored ones they join. Only the batch sessions that can
    join one (same session id, or same user for gap-based sessions) go through the merge;
    the others are complete as they are."""
    if not stored.height:
        return local
    keyed = pl.col("source_session_id").is_not_null()
    gapped_users = stored.filter(~keyed)["user_id"].unique().implode()
    joins = (keyed & pl.col("session_key").is_in(stored["session_key"].implode())) | (
        ~keyed & pl.col("user_id").is_in(gapped_users)
    )
    merged = merge_sessions(pl.concat([local.filter(joins), stored], how="vertical_relaxed"))
    return pl.concat([local.filter(~joins), merged], how="vertical_relaxed")


def lock_buckets(user_hashes: pl.Series) -> list[int]:
    """Advisory-lock buckets of a batch's users, sorted so writers never deadlock."""
    buckets = (user_hashes.reinterpret(signed=False) % _LOCK_BUCKETS).unique().sort()
    return [int(b) for b in buckets.to_list()]


def update_sessions(
    conn: psycopg.Connection[tuple[object, ...]], local: pl.DataFrame, buckets: list[int]
) -> pl.DataFrame:
    """Fold a batch's own sessions (:func:`batch_sessions` of the rows just inserted) into
    ``user_sessions`` and the funnels; ``buckets`` from :func:`lock_buckets` of the same
    rows. Returns how many sessions each of the batch's users gained (merging can make it
    negative), for ``customer_metrics``."""
    if not local.height:
        return _NO_SESSION_COUNTS.clear()
    conn.execute(
        "SELECT pg_advisory_xact_lock(%s, b) FROM unnest(%s::int[]) AS b ORDER BY b",
        (_LOCK_CLASS, buckets),
    )
    stored = _touching(conn, local)
    merged = _merged_with(local, stored)
    if stored.height:
        conn.execute(
            "DELETE FROM user_sessions WHERE session_key = ANY(%s)",
            (stored["session_key"].to_list(),),
        )
    _copy_sessions(conn, merged)
    _update_funnels(conn, added=merged, removed=stored)
    return (
        merged.group_by("user_id")
        .len("added")
        .join(stored.group_by("user_id").len("removed"), on="user_id", how="full", coalesce=True)
        .select(
            "user_id",
            (
                pl.col("added").fill_null(0).cast(pl.Int64)
                - pl.col("removed").fill_null(0).cast(pl.Int64)
            ).alias("sessions"),
        )
        .filter(pl.col("sessions") != 0)
    )


def drop_customer_sessions(
    conn: psycopg.Connection[tuple[object, ...]], customers: sql.Composable
) -> set[date]:
    """Delete the sessions of the customers in table ``customers`` (``user_id``), whose
    events a range rebuild folds again; returns the days they started on, whose funnels
    :func:`recount_funnels` must then count again."""
    rows = conn.execute(
        sql.SQL(
            """DELETE FROM user_sessions s USING {} c WHERE s.user_id = c.user_id
               RETURNING (s.session_start AT TIME ZONE 'UTC')::date"""
        ).format(customers)
    ).fetchall()
    return {row[0] for row in rows if isinstance(row[0], date)}


def customer_session_days(
    conn: psycopg.Connection[tuple[object, ...]], customers: sql.Composable
) -> set[date]:
    """The days the sessions of the customers in table ``customers`` start on."""
    rows = conn.execute(
        sql.SQL(
            """SELECT DISTINCT (s.session_start AT TIME ZONE 'UTC')::date
                 FROM user_sessions s JOIN {} c USING (user_id)"""
        ).format(customers)
    ).fetchall()
    return {row[0] for row in rows if isinstance(row[0], date)}


def recount_funnels(conn: psycopg.Connection[tuple[object, ...]], days: list[date]) -> None:
    """Count the funnels of ``days`` again from every session that starts on them."""
    conn.execute("DELETE FROM funnel_sessions WHERE day = ANY(%s)", (days,))
    rows = conn.execute(
        """SELECT session_start AT TIME ZONE 'UTC', entry_category, views, add_to_cart,
                  purchases
             FROM user_sessions
            WHERE (session_start AT TIME ZONE 'UTC')::date = ANY(%s)""",
        (days,),
    ).fetchall()
    sessions = pl.DataFrame(rows, schema=_FUNNEL_INPUT, orient="row")
    _update_funnels(conn, added=sessions, removed=sessions.clear())


_FUNNEL_INPUT: Final[dict[str, pl.DataType]] = {
    "session_start": pl.Datetime("us"),
    "entry_category": pl.String(),
    "views": pl.Int64(),
    "add_to_cart": pl.Int64(),
    "purchases": pl.Int64(),
}


def funnel_deltas(added: pl.DataFrame, removed: pl.DataFrame) -> pl.DataFrame:
    """Changes to ``funnel_sessions`` when ``removed`` sessions give way to ``added`` ones."""

    def counted(sessions: pl.DataFrame, sign: int) -> pl.DataFrame:
        view, cart, bought = (pl.col(c) > 0 for c in ("views", "add_to_cart", "purchases"))
        flags = {
            "sessions": pl.lit(value=True),
            "sessions_with_view": view,
            "sessions_with_cart": cart,
            "sessions_with_purchase": bought,
            "view_and_cart": view & cart,
            "cart_and_purchase": cart & bought,
            "view_and_purchase": view & bought,
        }
        return sessions.select(
            pl.col("session_start").dt.date().alias("day"),
            pl.col("entry_category").fill_null(UNKNOWN_CATEGORY).alias("category"),
            *((flag.cast(pl.Int64) * sign).alias(name) for name, flag in flags.items()),
        )

    both = pl.concat([counted(added, 1), counted(removed, -1)])
    deltas = both.group_by("day", "category").sum().sort("day", "category")
    return deltas.filter(pl.any_horizontal(pl.exclude("day", "category") != 0))


def _update_funnels(
    conn: psycopg.Connection[tuple[object, ...]], *, added: pl.DataFrame, removed: pl.DataFrame
) -> None:
    deltas = funnel_deltas(added, removed)
    if not deltas.height:
        return
    counts = [c for c in deltas.columns if c not in ("day", "category")]
    statement = sql.SQL(
        """INSERT INTO funnel_sessions AS f (day, category, {columns})
           SELECT * FROM unnest(%s::date[], %s::text[], {arrays})
           ON CONFLICT (day, category) DO UPDATE SET {sums}"""
    ).format(
        columns=sql.SQL(", ").join(map(sql.Identifier, counts)),
        arrays=sql.SQL(", ").join(sql.SQL("%s::bigint[]") for _ in counts),
        sums=sql.SQL(", ").join(
            sql.SQL("{} = {} + excluded.{}").format(
                sql.Identifier(c), sql.Identifier("f", c), sql.Identifier(c)
            )
            for c in counts
        ),
    )
    conn.execute(statement, [deltas[c].to_list() for c in deltas.columns])


_STORED_COLUMNS: Final = sql.SQL(", ").join(
    sql.SQL("{} AT TIME ZONE 'UTC' AS {}").format(sql.Identifier("s", c), sql.Identifier(c))
    if c in ("session_start", "session_end")
    else sql.SQL("{}::text").format(sql.Identifier("s", c))
    if c == "entry_event_id"
    else sql.Identifier("s", c)
    for c in SESSION_COLUMNS
)


_PROBE: Final = "stage_session_probe"


def create_probe_stage(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    """The session's table of lookups for :func:`_touching`; once per connection."""
    conn.execute(
        sql.SQL(
            "CREATE TEMP TABLE IF NOT EXISTS {} (session_key text, user_id text, "
            "lo timestamp, hi timestamp) ON COMMIT DELETE ROWS"
        ).format(sql.Identifier(_PROBE))
    )


def _touching(conn: psycopg.Connection[tuple[object, ...]], local: pl.DataFrame) -> pl.DataFrame:
    """Stored sessions that one of the batch's sessions joins: same session id, or same
    user within 30 minutes of one of its gap-based sessions.

    The lookups travel by COPY into a temporary table (one per user for gap-based
    sessions, spanning all of the user's batch sessions): passing thousands of keys and
    timestamps as array parameters cost more than the query itself. A stored session
    between two of a user's batch sessions may come back without touching either; merging
    leaves it as it was. Each kind of lookup runs only when the batch has sessions of that
    kind; the two never match the same stored session, so their rows simply add up."""
    keyed = local.filter(pl.col("source_session_id").is_not_null()).select("session_key")
    gapped = (
        local.filter(pl.col("source_session_id").is_null())
        .group_by("user_id")
        .agg(pl.col("session_start").min().alias("lo"), pl.col("session_end").max().alias("hi"))
    )
    probe = pl.concat([keyed, gapped], how="diagonal").select("session_key", "user_id", "lo", "hi")
    with conn.cursor().copy(
        sql.SQL("COPY {} FROM STDIN (FORMAT csv)").format(sql.Identifier(_PROBE))
    ) as copy:
        copy.write(
            probe.write_csv(
                include_header=False, datetime_format="%Y-%m-%d %H:%M:%S%.6f", null_value=""
            )
        )
    rows: list[tuple[object, ...]] = []
    if keyed.height:
        rows += conn.execute(_BY_SESSION_ID).fetchall()
    if gapped.height:
        rows += conn.execute(_BY_GAP, {"gap": SESSION_GAP}).fetchall()
    return pl.DataFrame(rows, schema=local.schema, orient="row")


# Each lookup is an index scan per batch session or user (LATERAL, with OFFSET 0 so the
# planner keeps it one): its cost follows the batch, where a hash join over the table,
# which the planner prefers without statistics on the probe, grows with every session stored.
_BY_SESSION_ID: Final = sql.SQL(
    """SELECT s.* FROM {probe} l CROSS JOIN LATERAL (
           SELECT {columns} FROM user_sessions s WHERE s.session_key = l.session_key OFFSET 0
       ) s"""
).format(columns=_STORED_COLUMNS, probe=sql.Identifier(_PROBE))
_BY_GAP: Final = sql.SQL(
    """SELECT s.* FROM {probe} l CROSS JOIN LATERAL (
           SELECT {columns}
             FROM user_sessions s
            WHERE s.user_id = l.user_id AND s.source_session_id IS NULL
              AND s.session_end >= (l.lo - %(gap)s) AT TIME ZONE 'UTC'
              AND s.session_start <= (l.hi + %(gap)s) AT TIME ZONE 'UTC'
           OFFSET 0
       ) s"""
).format(columns=_STORED_COLUMNS, probe=sql.Identifier(_PROBE))


def _copy_sessions(conn: psycopg.Connection[tuple[object, ...]], sessions: pl.DataFrame) -> None:
    payload = sessions.write_csv(
        include_header=False, datetime_format="%Y-%m-%d %H:%M:%S%.6f+00", null_value=""
    )
    statement = sql.SQL("COPY user_sessions ({}) FROM STDIN (FORMAT csv)").format(
        sql.SQL(", ").join(map(sql.Identifier, SESSION_COLUMNS))
    )
    with conn.cursor().copy(statement) as copy:
        copy.write(payload)
