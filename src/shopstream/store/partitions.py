"""The monthly partitions of ``events`` (migration 0026): made ahead of the batches that
need them, dropped whole by retention.

A partition is made in a short transaction of its own, before the batch's: attaching one
locks ``events`` exclusively, which inside a batch's transaction would hold every reader
of the table up until that batch commits.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from typing import Any, Final

import polars as pl
import psycopg

# The month an event's partition holds, from its naive UTC ``event_timestamp``: what the
# database's ``shopstream_event_month`` computes from the stored timestamptz.
EVENT_MONTH: Final = pl.col("event_timestamp").dt.truncate("1mo").dt.date().alias("event_month")


def event_months(events: pl.DataFrame) -> set[date]:
    """The UTC months ``events`` fall in."""
    if events.is_empty():
        return set()
    return set(events.select(EVENT_MONTH.unique()).to_series().drop_nulls().to_list())


class EventMonths:
    """Which months ``events`` has a partition for, as far as this connection made sure;
    asks the database only about months it has not made sure of yet."""

    def __init__(self) -> None:
        self._present: set[date] = set()

    def ensure(self, conn: psycopg.Connection[Any], months: Iterable[date]) -> None:
        """Make the partitions of ``months`` that are missing, in a transaction of its own
        (``conn`` must not be in one)."""
        missing = sorted(set(months) - self._present)
        if not missing:
            return
        with conn.transaction():
            conn.execute("SELECT shopstream_add_event_months(%s::date[])", (missing,))
        self._present.update(missing)

    def forget(self) -> None:
        """A partition may have gone (retention dropped its month): ask again."""
        self._present.clear()


def drop_event_month(conn: psycopg.Connection[Any], month: date) -> int:
    """Drop ``month``'s partition with its events' keys and fraud rows, in the caller's
    transaction; returns the events it held (0 when there was none)."""
    row = conn.execute("SELECT shopstream_drop_event_month(%s)", (month,)).fetchone()
    return int(row[0]) if row else 0
