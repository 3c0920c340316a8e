"""Which event ids are already stored: the store-side half of deduplication.

The loader asks inside its transaction. The embedded runner also asks ahead, from the
parser thread, so the loader's critical path is the COPY alone; that early answer is only
a hint, since the primary key of ``event_ids`` (the store's deduplication key) stays the
arbiter of what is new.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import polars as pl
import psycopg

from shopstream.store.batch_ids import reserve_batch_id
from shopstream.store.connection import RetryBudget, connect, retry_transient

T = TypeVar("T")


def stored_ids(conn: psycopg.Connection[Any], ids: pl.Series) -> pl.Series:
    """The subset of ``ids`` (canonical lowercase UUID text) stored (in ``event_ids``)."""
    if ids.is_empty():
        return pl.Series("event_id", [], dtype=pl.String)
    literal = "{" + ",".join(ids.to_list()) + "}"
    rows = conn.execute(
        "SELECT event_id::text FROM event_ids WHERE event_id = ANY(%s::uuid[])", (literal,)
    ).fetchall()
    return pl.Series("event_id", [str(row[0]) for row in rows], dtype=pl.String)


class AheadConnection:
    """The parser thread's own connection, for work ahead of the loader: which ids are
    stored, and the next batch id. Rides out outages like the loader does."""

    def __init__(self, url: str, *, budget: RetryBudget, should_stop: Callable[[], bool]) -> None:
        self._url = url
        self._budget = budget
        self._should_stop = should_stop
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None

    def stored_ids(self, ids: pl.Series) -> pl.Series:
        return self._retrying(lambda conn: stored_ids(conn, ids), "looking up stored event ids")

    def reserve_batch_id(self) -> int:
        return self._retrying(reserve_batch_id, "reserving a batch id")

    def _retrying(self, work: Callable[[psycopg.Connection[Any]], T], what: str) -> T:
        return retry_transient(
            lambda: self._run(work),
            what=what,
            budget=self._budget,
            should_stop=self._should_stop,
        )

    def _run(self, work: Callable[[psycopg.Connection[Any]], T]) -> T:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = connect(self._url)
            self._conn.autocommit = True
        try:
            return work(self._conn)
        except psycopg.Error:
            if self._conn.broken:
                self._conn.close()
            raise

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def without(events: pl.DataFrame, ids: pl.Series) -> pl.DataFrame:
    """``events`` minus the rows whose ``event_id`` is in ``ids``."""
    return events.filter(~pl.col("event_id").is_in(ids.implode())) if len(ids) else events
