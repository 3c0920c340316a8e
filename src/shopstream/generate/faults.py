"""Realistic trouble for the pipeline: bad rows, re-sent events, late arrivals."""

from __future__ import annotations

from enum import StrEnum
from typing import Final

import numpy as np
import polars as pl


class Dirt(StrEnum):
    """Kinds of bad rows; the last two break the line itself, not just a value."""

    BAD_UUID = "bad_uuid"
    UNKNOWN_TYPE = "unknown_type"
    PURCHASE_WITHOUT_PRICE = "purchase_without_price"
    BAD_TIMESTAMP = "bad_timestamp"
    FUTURE_TIMESTAMP = "future_timestamp"
    COLUMN_COUNT = "column_count"
    INVALID_UTF8 = "invalid_utf8"


LINE_LEVEL: Final = (Dirt.COLUMN_COUNT, Dirt.INVALID_UTF8)


def plan(
    events: pl.DataFrame,
    rng: np.random.Generator,
    *,
    dirty: float,
    duplicates: float,
    late: float,
) -> pl.DataFrame:
    """Add ``_emit`` (seconds, the order rows are written in) and ``_dirt`` (or null).

    Duplicates are extra copies of earlier events, emitted up to minutes later (so often
    in a later file); late events are emitted minutes to hours after their event time.
    """
    n = events.height
    emit = events["event_timestamp"].dt.epoch("us").to_numpy() / 1e6
    late_mask = rng.random(n) < late
    emit = emit + np.where(late_mask, rng.uniform(120, 3 * 3600, n), 0.0)
    planned = events.with_columns(_emit=pl.Series(emit), _dirt=pl.lit(None, dtype=pl.String))
    copies = round(n * duplicates)
    if copies:
        source = rng.integers(0, n, copies)
        dupes = planned[source].with_columns(
            _emit=pl.Series(emit[source] + rng.uniform(0.5, 600, copies))
        )
        planned = pl.concat([planned, dupes])
    dirty_mask = rng.random(planned.height) < dirty
    kinds = np.array([d.value for d in Dirt])[rng.integers(0, len(Dirt), planned.height)]
    planned = planned.with_columns(
        _dirt=pl.when(pl.Series(dirty_mask)).then(pl.Series(kinds)).otherwise(None)
    )
    return _apply_value_dirt(planned).sort("_emit", maintain_order=True)


def _apply_value_dirt(frame: pl.DataFrame) -> pl.DataFrame:
    dirt = pl.col("_dirt")
    return frame.with_columns(
        pl.when(dirt == Dirt.BAD_UUID)
        .then(pl.col("event_id").str.slice(0, 13))
        .otherwise(pl.col("event_id"))
        .alias("event_id"),
        pl.when(dirt == Dirt.UNKNOWN_TYPE)
        .then(pl.lit("teleport"))
        .when(dirt == Dirt.PURCHASE_WITHOUT_PRICE)
        .then(pl.lit("purchase"))
        .otherwise(pl.col("event_type"))
        .alias("event_type"),
        pl.when(dirt == Dirt.PURCHASE_WITHOUT_PRICE)
        .then(pl.lit(0.0))
        .otherwise(pl.col("price"))
        .alias("price"),
        pl.when(dirt == Dirt.PURCHASE_WITHOUT_PRICE)
        .then(pl.lit(1, dtype=pl.Int64))
        .otherwise(pl.col("quantity"))
        .alias("quantity"),
    )
