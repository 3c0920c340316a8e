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

import io
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final

import polars as pl
import psycopg
from psycopg import sql

from shopstream.errors import TerminalError
from shopstream.store.derived import (
    CUSTOMER_TABLES,
    WINDOWED_TABLES,
    derive,
    prepare_connection,
    reset_stages,
    write_derived,
)
from shopstream.store.sessions import (
    customer_session_days,
    drop_customer_sessions,
    recount_funnels,
)

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
  FROM events WHERE {} ORDER BY event_timestamp, event_id
"""


# (lake root, days) -> those days' events, a day at a time, columns as EVENT_COLUMNS.
ArchivedEvents = Callable[[str, list[date]], Iterator[pl.DataFrame]]


class ArchivedHistoryError(TerminalError):
    """Events retention moved to the lake are needed, and no way to read them was given."""


@dataclass(frozen=True, slots=True)
class DayRange:
    """UTC days ``first`` to ``last``, both included."""

    first: date
    last: date

    def __post_init__(self) -> None:
        if self.first > self.last:
            raise ValueError(f"the range ends ({self.last}) before it starts ({self.first})")

    @property
    def bounds(self) -> tuple[datetime, datetime]:
        """The first moment in the range and the first after it."""
        start = datetime.combine(self.first, time(), UTC)
        return start, datetime.combine(self.last, time(), UTC) + timedelta(days=1)

    def holds(self, day: date) -> bool:
        return self.first <= day <= self.last


@dataclass(frozen=True, slots=True)
class RangeRebuilt:
    events: int  # the range's events, folded into the tables keyed by time
    customers: int  # customers with an event in the range (and those sharing a session)
    customer_events: int  # all their events, folded into the tables keyed by customer


class PendingBatchesError(TerminalError):
    """A range rebuild must cover every day that deferred batches' events fall on."""


def rebuild(
    conn: psycopg.Connection[tuple[object, ...]],
    reader: psycopg.Connection[Any],
    chunk_rows: int = CHUNK_ROWS,
    archived: ArchivedEvents | None = None,
) -> int:
    """Recompute every derived table; returns the events folded."""
    folded = 0
    with conn.transaction():
        moved = _locked(conn, archived)
        # DELETE, not TRUNCATE: readers keep seeing the old rows until the commit (TRUNCATE
        # would lock them out), and the ingest role needs no extra right.
        for table in DERIVED_TABLES:
            conn.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(table)))
        prepare_connection(conn)
        from_lake = _lake(moved, archived, chunk_rows)
        for events in itertools.chain(from_lake, _chunks(reader, chunk_rows)):
            _fold(conn, events)
            folded += events.height
        conn.execute("UPDATE batches SET derived_pending = false WHERE derived_pending")
    return folded


def rebuild_range(
    conn: psycopg.Connection[tuple[object, ...]],
    reader: psycopg.Connection[Any],
    days: DayRange,
    chunk_rows: int = CHUNK_ROWS,
    archived: ArchivedEvents | None = None,
) -> RangeRebuilt:
    """Recompute what the events of ``days`` feed, leaving the rest as it is: the tables
    keyed by time (minute rollups, product days) for those days from their events; the
    tables keyed by customer (customer metrics, sessions) for every customer with an event
    in those days, from all of that customer's events; and the funnels of every day whose
    sessions that changed. Customers who share a session id go together, so every session
    is rebuilt whole or not at all. Batches loaded with rollups deferred are folded too,
    when the range covers their events' days (refused otherwise). One transaction, like
    :func:`rebuild`."""
    with conn.transaction():
        moved = _locked(conn, archived)
        pending = pending_days(conn)
        if pending is not None and not (days.holds(pending.first) and days.holds(pending.last)):
            raise PendingBatchesError(
                "batches loaded with rollups deferred hold events from"
                f" {pending.first} to {pending.last}: rebuild a range that covers those days"
                " (or everything)"
            )
        lo, hi = days.bounds
        # Step 1: empty the range's rows of the tables keyed by time.
        conn.execute(
            "DELETE FROM realtime_metrics WHERE window_start >= %s AND window_start < %s",
            (lo, hi),
        )
        conn.execute(
            "DELETE FROM product_analytics WHERE day BETWEEN %s AND %s", (days.first, days.last)
        )
        prepare_connection(conn)
        # Step 2: fold the range's events into them, noting whose events they are.
        in_range = sql.SQL("event_timestamp >= {} AND event_timestamp < {}").format(
            sql.Literal(lo), sql.Literal(hi)
        )
        lake_days = {root: [d for d in ds if days.holds(d)] for root, ds in moved.items()}
        seen: set[str] = set()
        folded = 0
        for events in itertools.chain(
            _lake(lake_days, archived, chunk_rows), _chunks(reader, chunk_rows, in_range)
        ):
            seen.update(events["user_id"].unique().to_list())
            _fold(conn, events, WINDOWED_TABLES)
            folded += events.height
        # Step 3: add the customers who share a session id with them, until none joins.
        customers = _sharing_sessions(seen, _session_pairs(reader, moved, archived))
        # Step 4: drop their sessions and their metrics.
        for connection in (conn, reader):
            _list_customers(connection, customers)
        conn.execute(
            sql.SQL("DELETE FROM customer_metrics m USING {} c WHERE m.user_id = c.user_id").format(
                _CUSTOMERS
            )
        )
        dropped_days = drop_customer_sessions(conn, _CUSTOMERS)
        # Step 5: fold all their events into the tables keyed by customer.
        theirs = sql.SQL("user_id IN (SELECT user_id FROM {})").format(_CUSTOMERS)
        refolded = 0
        for events in itertools.chain(
            (
                frame.filter(pl.col("user_id").is_in(customers))
                for frame in _lake(moved, archived, chunk_rows)
            ),
            _chunks(reader, chunk_rows, theirs),
        ):
            _fold(conn, events, CUSTOMER_TABLES)
            refolded += events.height
        # Step 6: count again the funnels of every day whose sessions changed: the range's
        # (every session starting there is one of the customers'), and those the customers'
        # sessions started on before and after.
        funnel_days = conn.execute(
            "SELECT DISTINCT day FROM funnel_sessions WHERE day BETWEEN %s AND %s",
            (days.first, days.last),
        ).fetchall()
        changed = (
            {row[0] for row in funnel_days if isinstance(row[0], date)}
            | dropped_days
            | customer_session_days(conn, _CUSTOMERS)
        )
        recount_funnels(conn, sorted(changed))
        # Step 7: every deferred batch's events lay in the range: all folded now.
        if pending is not None:
            conn.execute("UPDATE batches SET derived_pending = false WHERE derived_pending")
    return RangeRebuilt(folded, len(customers), refolded)


_CUSTOMERS: Final = sql.Identifier("rebuild_customers")


def _list_customers(conn: psycopg.Connection[Any], customers: list[str]) -> None:
    """``customers`` as a temporary table of ``conn``'s, to join against."""
    conn.execute(
        sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} (user_id text PRIMARY KEY)").format(_CUSTOMERS)
    )
    conn.execute(sql.SQL("TRUNCATE {}").format(_CUSTOMERS))
    with conn.cursor().copy(sql.SQL("COPY {} FROM STDIN").format(_CUSTOMERS)) as copy:
        for user in customers:
            copy.write_row((user,))
    conn.execute(sql.SQL("ANALYZE {}").format(_CUSTOMERS))


_EVERY_EVENT: Final = sql.SQL("TRUE")


def _locked(
    conn: psycopg.Connection[Any], archived: ArchivedEvents | None
) -> dict[str, list[date]]:
    """Lock out writers to ``events`` until the commit; the days the lake holds instead
    (refused without a way to read them)."""
    conn.execute("LOCK TABLE events IN SHARE MODE")
    moved = _archived_days(conn)
    if moved and archived is None:
        days = [d for ds in moved.values() for d in ds]
        raise ArchivedHistoryError(
            f"the events of {len(days)} days ({min(days)} to {max(days)}) left PostgreSQL"
            " for the lake: a rebuild needs the lake to keep them"
        )
    return moved


def _fold(
    conn: psycopg.Connection[tuple[object, ...]],
    events: pl.DataFrame,
    tables: frozenset[str] | None = None,
) -> None:
    write_derived(conn, derive(events, tables))
    reset_stages(conn)


def _lake(
    moved: dict[str, list[date]], archived: ArchivedEvents | None, chunk_rows: int
) -> Iterator[pl.DataFrame]:
    """The archived days' events, in chunks of about ``chunk_rows``."""
    if archived is None:
        return iter(())
    return _coalesced(
        (frame for root, days in moved.items() if days for frame in archived(root, days)),
        chunk_rows,
    )


def _session_pairs(
    reader: psycopg.Connection[Any],
    moved: dict[str, list[date]],
    archived: ArchivedEvents | None,
) -> pl.DataFrame:
    """Every (user_id, session_id) an event carries, in PostgreSQL and the lake."""
    schema: dict[str, pl.DataType | type[pl.DataType]] = {
        "user_id": pl.String,
        "session_id": pl.String,
    }
    stored = _copied(
        reader,
        sql.SQL("SELECT DISTINCT user_id, session_id FROM events WHERE session_id IS NOT NULL"),
        schema,
        CHUNK_ROWS,
    )
    archived_pairs = [
        frame.filter(pl.col("session_id").is_not_null()).select(*schema).unique()
        for frame in _lake(moved, archived, CHUNK_ROWS)
    ]
    return pl.concat([pl.DataFrame(schema=schema), *stored, *archived_pairs]).unique()


def _sharing_sessions(customers: set[str], pairs: pl.DataFrame) -> list[str]:
    """``customers`` and, transitively, every customer sharing a session id with them."""
    closed = pl.Series("user_id", sorted(customers), dtype=pl.String)
    while True:
        sessions = pairs.filter(pl.col("user_id").is_in(closed))["session_id"]
        joined = pairs.filter(pl.col("session_id").is_in(sessions))["user_id"]
        grown = pl.concat([closed, joined]).unique()
        if grown.len() == closed.len():
            return sorted(grown.to_list())
        closed = grown


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


def pending_days(conn: psycopg.Connection[Any]) -> DayRange | None:
    """The UTC days the events of batches loaded with rollups deferred fall on, if any:
    the range a rebuild must cover to fold them (what ``backfill`` rebuilds)."""
    row = conn.execute(
        """SELECT min(event_timestamp AT TIME ZONE 'UTC')::date,
                  max(event_timestamp AT TIME ZONE 'UTC')::date
             FROM events
            WHERE batch_id IN (SELECT batch_id FROM batches WHERE derived_pending)"""
    ).fetchone()
    if row is None or not isinstance(row[0], date) or not isinstance(row[1], date):
        return None
    return DayRange(row[0], row[1])


def holds_every_event(conn: psycopg.Connection[Any], days: DayRange) -> bool:
    """Whether no stored or archived event lies outside ``days``: a full rebuild then does
    what a range rebuild would, reading the events once instead of twice."""
    lo, hi = days.bounds
    row = conn.execute(
        """SELECT NOT EXISTS (SELECT 1 FROM events
                               WHERE event_timestamp < %s OR event_timestamp >= %s)
              AND NOT EXISTS (SELECT 1 FROM archived_event_days WHERE day < %s OR day > %s)""",
        (lo, hi, days.first, days.last),
    ).fetchone()
    return bool(row and row[0])


def pending_batches(conn: psycopg.Connection[Any]) -> int:
    """Batches loaded with rollups deferred that no rebuild has folded yet."""
    row = conn.execute("SELECT count(*) FROM batches WHERE derived_pending").fetchone()
    return int(row[0]) if row else 0


def _chunks(
    reader: psycopg.Connection[Any], chunk_rows: int, where: sql.Composable = _EVERY_EVENT
) -> Iterator[pl.DataFrame]:
    """The stored events ``where`` holds, oldest first, ``chunk_rows`` at a time."""
    return _copied(reader, sql.SQL(_READ).format(where), EVENT_COLUMNS, chunk_rows)


def _copied(
    reader: psycopg.Connection[Any],
    query: sql.Composable,
    schema: dict[str, pl.DataType | type[pl.DataType]],
    chunk_rows: int,
) -> Iterator[pl.DataFrame]:
    """``query``'s rows, ``chunk_rows`` at a time: one COPY (a row per message) cut into
    chunks for Polars' CSV reader, three times faster than fetching rows as Python tuples.
    It needs a connection of its own, since the rebuild writes between chunks while the
    COPY is still streaming; memory follows the chunk."""
    statement = sql.SQL("COPY ({}) TO STDOUT (FORMAT csv)").format(query)
    with reader.cursor().copy(statement) as copy:
        rows: list[bytes] = []
        for row in copy:
            rows.append(bytes(row))
            if len(rows) == chunk_rows:
                yield _parsed(rows, schema)
                rows = []
        if rows:
            yield _parsed(rows, schema)


def _parsed(rows: list[bytes], schema: dict[str, pl.DataType | type[pl.DataType]]) -> pl.DataFrame:
    return pl.read_csv(
        io.BytesIO(b"".join(rows)),
        has_header=False,
        new_columns=list(schema),
        schema_overrides=schema,
    )
