"""Built-in transforms for foreign exports whose mapping needs more than renames.

Each renames and recombines the export's text columns into canonical ones before the rest
of its mapping (``parse/mappings/``), normalisation and validation, so the same rules
judge every format. Exports without an
event id get one derived from the row's content: re-ingesting a file is a no-op, and exact
duplicate rows collapse into one event (counted as duplicates).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from typing import Final

import polars as pl

from shopstream.schema import GUEST_USER_PREFIX


def uuid_of(key: str) -> str:
    """A stable UUID from a 128-bit BLAKE2b digest of ``key`` (content and derived ids)."""
    return str(uuid.UUID(bytes=hashlib.blake2b(key.encode(), digest_size=16).digest()))


def content_event_ids(frame: pl.DataFrame) -> pl.Series:
    """A UUID per row from a 128-bit BLAKE2b digest of all its fields, as received."""
    rows = frame.select(
        pl.concat_str([pl.col(c).fill_null("") for c in frame.columns], separator="\x1f")
    ).to_series()
    return pl.Series(
        "event_id",
        [uuid_of(row) for row in rows.to_list()],
        dtype=pl.String,
    )


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
        invoice.alias("order_id"),  # the invoice is the order its lines belong to
    )


# Named in a built-in mapping's ``[source] transform``: what a table of renames cannot say.
TRANSFORMS: Final[dict[str, Callable[[pl.DataFrame], pl.DataFrame]]] = {
    "rees46": _rees46,
    "online-retail": _online_retail,
}
