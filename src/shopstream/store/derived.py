"""Everything derived from a batch's inserted events: rollup deltas and batch sessions.

Deriving is pure Polars work, so the embedded runner does it ahead, in its parser thread,
for the rows it expects to insert; the loader then only writes. When the loader inserts a
different set (a concurrent writer took some ids), it derives again inside the transaction.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Final

import polars as pl
import psycopg
from psycopg import sql

from shopstream.store.rollups import (
    StagedDelta,
    create_stages,
    rollup_deltas,
    with_measures,
    write_rollups,
)
from shopstream.store.sessions import (
    batch_sessions,
    create_probe_stage,
    lock_buckets,
    update_sessions,
)


@dataclass(frozen=True, slots=True)
class Derived:
    rollups: list[StagedDelta]
    sessions: pl.DataFrame
    lock_buckets: list[int]


# What a range rebuild folds apart: tables keyed by time take the range's events; tables
# keyed by customer (funnel_sessions follow user_sessions) take its customers' events.
WINDOWED_TABLES: Final = frozenset({"realtime_metrics", "product_analytics"})
CUSTOMER_TABLES: Final = frozenset({"customer_metrics", "user_sessions"})


def derive(events: pl.DataFrame, tables: Collection[str] | None = None) -> Derived:
    """Deltas for every derived table, or only for ``tables`` (the rest left empty)."""
    measured = with_measures(events)  # user hashes and money, once for everything below
    with_sessions = tables is None or "user_sessions" in tables
    sessioned = measured if with_sessions else measured.clear()
    return Derived(
        rollup_deltas(measured, tables),
        batch_sessions(sessioned),
        lock_buckets(sessioned["_user"]),
    )


def prepare_connection(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    """The session's staging tables for writing derived data; once per connection."""
    create_stages(conn)
    create_probe_stage(conn)


def reset_stages(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    """Empty the session's staging tables (``stage_*``), as a commit does (they are ON
    COMMIT DELETE ROWS): for writing several batches' worth in one transaction."""
    names = conn.execute(
        "SELECT relname FROM pg_class WHERE relnamespace = pg_my_temp_schema()"
        " AND relkind = 'r' AND relname LIKE 'stage\\_%'"
    ).fetchall()
    if names:
        conn.execute(
            sql.SQL("TRUNCATE {}").format(
                sql.SQL(", ").join(sql.Identifier(str(n[0])) for n in names)
            )
        )


def write_derived(conn: psycopg.Connection[tuple[object, ...]], derived: Derived) -> None:
    """Sessions first: each customer's change in session count joins its rollup upsert."""
    session_counts = update_sessions(conn, derived.sessions, derived.lock_buckets)
    write_rollups(conn, derived.rollups, session_counts)
