"""COPY helpers shared by the loader and the staging workers: frames serialised by Polars
(in Rust, no per-row Python) and quarantine rows in their stored form."""

from __future__ import annotations

from typing import Final

import polars as pl
import psycopg
from psycopg import sql

# The quarantine columns a batch writes (the rest are defaults).
QUARANTINE_COLUMNS: Final = (
    "batch_id",
    "source",
    "line_no",
    "scope",
    "rules",
    "raw",
    "raw_bytes",
    "format",
    "header",
    "raw_size",
    "raw_sha256",
    "fields",
    "records",
)


def copy_frame(
    conn: psycopg.Connection[tuple[object, ...]],
    table: str | sql.Identifier,
    columns: tuple[str, ...],
    frame: pl.DataFrame,
    *,
    freeze: bool = False,
) -> None:
    """COPY a frame as CSV: serialised by Polars in Rust, no per-row Python. ``table``: a
    name in the search path, or an identifier (schema-qualified). ``freeze``: the rows are
    written frozen (the table must be created in this transaction), so their first reader
    does not rewrite every page to set hint bits."""
    payload = frame.write_csv(
        include_header=False,
        datetime_format="%Y-%m-%d %H:%M:%S%.6f",
        null_value="",
        quote_style="necessary",
    )
    statement = sql.SQL("COPY {table} ({cols}) FROM STDIN (FORMAT csv{freeze})").format(
        table=sql.Identifier(table) if isinstance(table, str) else table,
        cols=sql.SQL(", ").join(map(sql.Identifier, columns)),
        freeze=sql.SQL(", FREEZE") if freeze else sql.SQL(""),
    )
    with conn.cursor().copy(statement) as copy:
        copy.write(payload)


def carried(frame: pl.DataFrame, names: tuple[str, ...]) -> tuple[str, ...]:
    """The columns of ``names`` that some row of ``frame`` holds a value in: the others are
    left to their NULL default rather than sent as empty fields for the server to parse."""
    return tuple(n for n in names if frame[n].null_count() < frame.height)


def quarantine_for_copy(
    quarantine: pl.DataFrame, batch_id: int, excerpt_bytes: int
) -> pl.DataFrame:
    """Rows as stored: an excerpt of each record's raw content, with the whole record's
    size (engines that kept the whole record leave it to this step) and, when the record
    was longer than its excerpt, its SHA-256."""
    whole = pl.coalesce(pl.col("raw_bytes"), pl.col("raw").cast(pl.Binary))
    return quarantine.select(
        pl.lit(batch_id, dtype=pl.Int64).alias("batch_id"),
        "source",
        "line_no",
        "scope",
        pl.concat_str(pl.lit("{"), pl.col("rules").list.join(","), pl.lit("}")).alias("rules"),
        pl.col("raw").str.slice(0, excerpt_bytes),
        pl.concat_str(
            pl.lit("\\x"),
            pl.col("raw_bytes")
            .map_elements(lambda raw: raw[:excerpt_bytes], return_dtype=pl.Binary, skip_nulls=True)
            .bin.encode("hex"),
        ).alias("raw_bytes"),
        "format",
        "header",
        pl.col("raw_size").fill_null(whole.bin.size()),
        # The hash of a record stored whole is computed from it when asked for.
        pl.when(pl.col("raw_size") > excerpt_bytes).then(pl.col("raw_sha256")),
        pl.when(pl.col("fields").list.len() > 0).then(
            pl.concat_str(pl.lit("{"), pl.col("fields").list.join(","), pl.lit("}"))
        ),
        "records",
    )
