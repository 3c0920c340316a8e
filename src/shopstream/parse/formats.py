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

from shopstream.schema import GUEST_USER_PREFIX, InputFormat


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


def _negated(text: pl.Expr) -> pl.Expr:
    """A number's text with the opposite sign, still text (unparsable stays unparsable)."""
    return (
        pl.when(text.str.starts_with("-"))
        .then(text.str.strip_prefix("-"))
        .otherwise(pl.lit("-") + text.str.strip_prefix("+"))
    )


def _online_retail(frame: pl.DataFrame) -> pl.DataFrame:
    """UCI Online Retail: an invoice line is a purchase, a cancellation line (invoice C...) a
    refund of ``-Quantity`` units. ``CustomerID`` comes as float text (``17850.0``); a line
    without one is a guest checkout under ``guest:<invoice>``. Invoice dates carry no zone
    and are read as UTC; the original ``M/D/YYYY H:MM`` spelling is accepted too. The
    format's own rules (``retail_*``) judge ``invoice_no`` and the signed quantity."""
    invoice = pl.col("invoiceno").str.strip_chars()
    cancelled = invoice.str.starts_with("C")
    quantity = pl.col("quantity").str.strip_chars()
    customer = pl.col("customerid").str.strip_chars().str.replace(r"\.0*$", "")
    us_date = (
        pl.col("invoicedate")
        .str.strip_chars()
        .str.to_datetime("%m/%d/%Y %H:%M", strict=False)
        .dt.strftime("%Y-%m-%d %H:%M:%S")
    )
    return frame.select(
        content_event_ids(frame),
        pl.when(cancelled).then(pl.lit("refund")).otherwise(pl.lit("purchase")).alias("event_type"),
        pl.when(customer.is_null() | (customer == ""))
        .then(pl.lit(GUEST_USER_PREFIX) + invoice)
        .otherwise(customer)
        .alias("user_id"),
        pl.col("stockcode").alias("product_id"),
        pl.coalesce(us_date, pl.col("invoicedate")).alias("event_timestamp"),
        pl.col("unitprice").alias("price"),
        pl.when(cancelled).then(_negated(quantity)).otherwise(quantity).alias("quantity"),
        pl.lit("GBP").alias("currency"),
        "country",
        invoice.alias("invoice_no"),
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
        Adapter(
            InputFormat.ONLINE_RETAIL,
            ("invoiceno", "stockcode", "description", "quantity", "invoicedate", "unitprice",
             "customerid", "country"),
            _online_retail,
        ),
    )
}  # fmt: skip
