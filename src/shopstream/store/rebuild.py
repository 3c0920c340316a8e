"""``shopstream rebuild``: recompute the live derived tables from ``events``.

After a rule or mapping change, a restore or a bug fix, the rollups, sessions, funnels and
customer metrics are emptied and folded again from the stored events, chunk by chunk, with
the very code each batch's commit uses (:mod:`shopstream.store.derived`), so the result is
what streaming would have produced. One transaction: readers see the old figures until it
commits, and a crash leaves them untouched. It holds a SHARE lock on ``events``, so a live
runner's next commit waits for the rebuild rather than folding into half-rebuilt tables.
Batches loaded with rollups deferred are marked ``derived_pending``; the rebuild clears the
mark in the same transaction. Days whose events retention moved to the lake
(``archived_event_days``) are folded from the lake first, through the reader the caller
passes (the store does not know the lake); without one the rebuild refuses.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from datetime import date
from typing import Any, Final

import polars as pl
import psycopg
from psycopg import sql

from shopstream.errors import TerminalError
from shopstream.store.derived import derive, prepare_connection, reset_stages, write_derived

DERIVED_TABLES: Final = (
    "realtime_metrics", "product_analytics", "customer_metrics", "user_sessions",
    "funnel_sessions",
)  # fmt: skip
CHUNK_ROWS: Final = 500_000  # events folded at once: memory follows this (~0.6 GB)
EVENT_COLUMNS: Final[dict[str, pl.DataType | type[pl.DataType]]] = {
    "event_id": pl.String, "event_type": pl.String, "user_id": pl.String,
    "product_id": pl.String, "event_timestamp": pl.Datetime("us"), "session_id": pl.String,
    "category": pl.String, "price": pl.Float64, "quantity": pl.Int64, "currency": pl.String,
}  # fmt: skip
# In event-time order: each chunk then touches few windows, days and sessions another chunk
# touched (as streaming ordered input does), so folding it is mostly inserts, not merges.
_READ: Final = """
SELECT event_id::text, event_type, user_id, product_id,
       (event_timestamp AT TIME ZONE 'UTC'), session_id, category, price::float8, quantity,
       currency
  FROM events ORDER BY event_timestamp, event_id
"""


# (lake root, days) -> those days' events, a day at a time, columns as EVENT_COLUMNS.
ArchivedEvents = Callable[[str, list[date]], Iterator[pl.DataFrame]]


class ArchivedHistoryError(TerminalError):
    """Events retention moved to the lake are needed, and no way to read them was given."""


def rebuild(
    conn: psycopg.Connection[tuple[object, ...]],
    chunk_rows: int = CHUNK_ROWS,
    archived: ArchivedEvents | None = None,
) -> int:
    """Recompute every derived table; returns the events folded."""
    folded = 0
    with conn.transaction():
        conn.execute("LOCK TABLE events IN SHARE MODE")
        moved = _archived_days(conn)
        if moved and archived is None:
            days = [d for ds in moved.values() for d in ds]
            raise ArchivedHistoryError(
                f"the events of {len(days)} days ({min(days)} to {max(days)}) left PostgreSQL"
                " for the lake: a rebuild needs the lake to keep them"
            )
        # DELETE, not TRUNCATE: readers keep seeing the old rows until the commit (TRUNCATE
        # would lock them out), and the ingest role needs no extra right.
        for table in DERIVED_TABLES:
            conn.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(table)))
        prepare_connection(conn)
        from_lake = _coalesced(
            (day for root, days in moved.items() if archived for day in archived(root, days)),
            chunk_rows,
        )
        for events in itertools.chain(from_lake, _chunks(conn, chunk_rows)):
            write_derived(conn, derive(events))
            reset_stages(conn)
            folded += events.height
        conn.execute("UPDATE batches SET derived_pending = false WHERE derived_pending")
    return folded


def _coalesced(frames: Iterator[pl.DataFrame], chunk_rows: int) -> Iterator[pl.DataFrame]:
    """Small frames (a lake day each) joined into chunks of about ``chunk_rows``."""
    held: list[pl.DataFrame] = []
    rows = 0
    for frame in frames:
        held.append(frame)
        rows += frame.height
        if rows >= chunk_rows:
            yield pl.concat(held)
            held, rows = [], 0
    if held:
        yield pl.concat(held)


def _archived_days(conn: psycopg.Connection[Any]) -> dict[str, list[date]]:
    moved: dict[str, list[date]] = {}
    for day, root in conn.execute(
        "SELECT day, lake_root FROM archived_event_days ORDER BY day"
    ).fetchall():
        moved.setdefault(str(root), []).append(day)
    return moved


def pending_batches(conn: psycopg.Connection[Any]) -> int:
    """Batches loaded with rollups deferred that no rebuild has folded yet."""
    row = conn.execute("SELECT count(*) FROM batches WHERE derived_pending").fetchone()
    return int(row[0]) if row else 0


def _chunks(conn: psycopg.Connection[Any], chunk_rows: int) -> Iterator[pl.DataFrame]:
    """The stored events, oldest first, ``chunk_rows`` at a time (a server-side cursor:
    memory follows the chunk, not the store)."""
    with conn.cursor(name="shopstream_rebuild") as cursor:
        cursor.itersize = chunk_rows
        cursor.execute(_READ)
        while rows := cursor.fetchmany(chunk_rows):
            yield pl.DataFrame(rows, schema=EVENT_COLUMNS, orient="row")
