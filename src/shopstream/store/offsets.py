"""Stream positions as the database holds them (``source_offsets``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg

from shopstream.store.connection import RetryBudget, connect, retry_transient


def stored_offsets(
    url: str, *, budget: RetryBudget, should_stop: Callable[[], bool]
) -> Callable[[str, list[tuple[str, int]]], dict[tuple[str, int], int]]:
    """A lookup of the next offset to load per (topic, partition) of a consumer group."""

    def lookup(group: str, partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        def ask() -> dict[tuple[str, int], int]:
            with connect(url) as conn:
                return offsets_of(conn, group, partitions)

        return retry_transient(
            ask,
            what="reading stored offsets",
            budget=budget,
            should_stop=should_stop,
        )

    return lookup


def offsets_of(
    conn: psycopg.Connection[Any], group: str, partitions: list[tuple[str, int]]
) -> dict[tuple[str, int], int]:
    if not partitions:
        return {}
    rows = conn.execute(
        """SELECT topic, partition, next_offset FROM source_offsets
            WHERE consumer_group = %s AND (topic, partition) IN
                  (SELECT * FROM unnest(%s::text[], %s::int[]))""",
        (group, [t for t, _ in partitions], [p for _, p in partitions]),
    ).fetchall()
    return {(str(t), int(str(p))): int(str(o)) for t, p, o in rows}
