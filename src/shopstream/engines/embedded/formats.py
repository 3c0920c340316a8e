"""Foreign exports mapped onto the canonical event, recognised by their exact header.

Each adapter renames and recombines the export's text columns into canonical ones before
normalisation and validation, so the same rules judge every format. Exports without an
event id get one derived from the row's content: re-ingesting a file is a no-op, and exact
duplicate rows collapse into one event (counted as duplicates).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import polars as pl

from shopstream.schema import InputFormat


def content_event_ids(frame: pl.DataFrame) -> pl.Series:
    """A UUID per row from a 128-bit BLAKE2b digest of all its fields, as received."""
    rows = frame.select(
        pl.concat_str([pl.col(c).fill_null("") for c in frame.columns], separator="\x1f")
    ).to_series()
    return pl.Series(
        "event_id",
        [
            str(uuid.UUID(bytes=hashlib.blake2b(row.encode(), digest_size=16).digest()))
            for row in rows.to_list()
        ],
        dtype=pl.String,
    )


@dataclass(frozen=True, slots=True)
class Adapter:
    input_format: InputFormat
    header: tuple[str, ...]
    to_canonical: Callable[[pl.DataFrame], pl.DataFrame]


def _rees46(frame: pl.DataFrame) -> pl.DataFrame:
    """REES46: ``cart`` is add_to_cart, ``category_code`` (else ``category_id``) the
    category, ``user_session`` the session; a purchase is one unit at ``price``."""
    kind = pl.col("event_type").str.strip_chars().str.to_lowercase()
    return frame.select(
        content_event_ids(frame),
        pl.when(kind == "cart").then(pl.lit("add_to_cart")).otherwise(kind).alias("event_type"),
        "user_id",
        "product_id",
        pl.col("event_time").alias("event_timestamp"),
        pl.col("user_session").alias("session_id"),
        pl.coalesce(
            pl.col("category_code").replace("", None), pl.col("category_id").replace("", None)
        ).alias("category"),
        "brand",
        "price",
        pl.when(kind == "purchase").then(pl.lit("1")).alias("quantity"),
    )


ADAPTERS: Final[dict[tuple[str, ...], Adapter]] = {
    adapter.header: adapter
    for adapter in (
        Adapter(
            InputFormat.REES46,
            ("event_time", "event_type", "product_id", "category_id", "category_code", "brand",
             "price", "user_id", "user_session"),
            _rees46,
        ),
    )
}  # fmt: skip
