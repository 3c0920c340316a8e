"""Events retention moved to the lake, read back for a rebuild: a day at a time, in event
time order, with the columns the derived tables are folded from."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import date

import polars as pl

from shopstream.lake.errors import ArchiveIncompleteError
from shopstream.lake.location import Lake
from shopstream.store.rebuild import EVENT_COLUMNS


def archived_events(root: str, days: list[date]) -> Iterator[pl.DataFrame]:
    """The lake's events of ``days`` (the lake at ``root``; credentials from AWS_*)."""
    lake = Lake.at(root, os.environ)
    table = lake.open("events")
    if table is None:
        raise ArchiveIncompleteError(f"the lake at {root} holds no events table")
    for day in days:
        held = pl.from_arrow(
            table.to_pyarrow_table(columns=list(EVENT_COLUMNS), filters=[("event_date", "=", day)])
        )
        assert isinstance(held, pl.DataFrame)
        yield (
            held.with_columns(
                pl.col("event_timestamp").dt.replace_time_zone(None),
                pl.col("price").cast(pl.Float64),
                pl.col("quantity").cast(pl.Int64),
            )
            .select(EVENT_COLUMNS.keys())
            .cast(EVENT_COLUMNS)  # type: ignore[arg-type]
            .sort("event_timestamp", "event_id")
        )
