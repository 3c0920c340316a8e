"""Text fields -> typed canonical columns, keeping the received text of typed fields.

Rules see both: ``price`` (a double, NULL when not a number) and ``raw_price`` (the text),
so "present but unparsable" is a rule of its own rather than a silent NULL.
"""

from __future__ import annotations

from typing import Final

import polars as pl

from shopstream.schema import ADAPTER_FIELDS, EVENT_FIELDS, FIELD_NAMES, TYPED_FIELDS

EVENT_SCHEMA: Final[dict[str, pl.DataType]] = {
    f.name: {
        "timestamp": pl.Datetime("us"),
        "money": pl.Float64(),
        "integer": pl.Int64(),
    }.get(f.kind, pl.String())
    for f in EVENT_FIELDS
}
# The rule columns a mapping adds (text as mapped), typed for the rules that read them.
ADAPTER_SCHEMA: Final[dict[str, pl.DataType]] = {
    name: {
        "rule_max_price": pl.Float64(),
        "rule_max_quantity": pl.Int64(),
        "rule_max_event_time": pl.Datetime("us"),
    }.get(name, pl.String())
    for name in ADAPTER_FIELDS
}
_LOWERCASE: Final = ("event_id", "event_type")
_UPPERCASE: Final = ("currency",)


def _parse_timestamp(text: pl.Expr) -> pl.Expr:
    """ISO 8601 or ``YYYY-MM-DD HH:MM:SS[.ffffff]``; no zone (or ``Z``/`` UTC``) means UTC."""
    clean = text.str.replace(r"(?i)(\s*UTC|Z)$", "").str.replace("T", " ", literal=True)
    naive = clean.str.to_datetime("%Y-%m-%d %H:%M:%S%.f", strict=False, time_unit="us")
    zoned = (
        clean.str.to_datetime("%Y-%m-%d %H:%M:%S%.f%:z", strict=False, time_unit="us")
        .dt.convert_time_zone("UTC")
        .dt.replace_time_zone(None)
    )
    return pl.coalesce(naive, zoned)


def _parse_quantity(text: pl.Expr) -> pl.Expr:
    number = text.cast(pl.Float64, strict=False)
    return pl.when(number == number.round(0)).then(number.cast(pl.Int64, strict=False))


def normalize(rows: pl.DataFrame) -> pl.DataFrame:
    """Canonical typed columns plus ``raw_<field>`` for typed fields; extra columns kept."""
    missing = [
        pl.lit(None, dtype=pl.String).alias(n)
        for n in (*FIELD_NAMES, *ADAPTER_FIELDS)
        if n not in rows.columns
    ]
    rows = rows.with_columns(pl.col(n).cast(pl.String) for n in ADAPTER_FIELDS if n in rows.columns)
    text = rows.with_columns(missing).with_columns(
        pl.col(name).str.strip_chars().replace("", None) for name in FIELD_NAMES
    )
    return text.with_columns(
        *(pl.col(n).str.to_lowercase() for n in _LOWERCASE),
        *(pl.col(n).str.to_uppercase() for n in _UPPERCASE),
        *(pl.col(n).alias(f"raw_{n}") for n in TYPED_FIELDS),
        _parse_timestamp(pl.col("event_timestamp")).alias("event_timestamp"),
        pl.col("price").cast(pl.Float64, strict=False).alias("price"),
        _parse_quantity(pl.col("quantity")).alias("quantity"),
        pl.col("rule_max_price").cast(pl.Float64, strict=False),
        pl.col("rule_max_quantity").cast(pl.Int64, strict=False),
        _parse_timestamp(pl.col("rule_max_event_time")).alias("rule_max_event_time"),
    )
