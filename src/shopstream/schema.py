"""The one definition of a ShopStream event: fields, types and accepted input formats.

Every engine, the generator and the store derive their columns from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Literal


class EventType(StrEnum):
    VIEW = "view"
    ADD_TO_CART = "add_to_cart"
    REMOVE_FROM_CART = "remove_from_cart"
    ADD_TO_WISHLIST = "add_to_wishlist"
    PURCHASE = "purchase"
    REFUND = "refund"  # a returned purchase: its amount counts against net revenue


FieldKind = Literal["uuid", "text", "timestamp", "money", "integer"]


@dataclass(frozen=True, slots=True)
class EventField:
    name: str
    kind: FieldKind
    required: bool
    max_length: int | None = None


EVENT_FIELDS: Final[tuple[EventField, ...]] = (
    EventField("event_id", "uuid", required=True),
    EventField("event_type", "text", required=True, max_length=32),
    EventField("user_id", "text", required=True, max_length=128),
    EventField("product_id", "text", required=True, max_length=128),
    EventField("event_timestamp", "timestamp", required=True),
    EventField("session_id", "text", required=False, max_length=128),
    EventField("category", "text", required=False, max_length=128),
    EventField("brand", "text", required=False, max_length=128),
    EventField("price", "money", required=False),
    EventField("quantity", "integer", required=False),
    EventField("currency", "text", required=False, max_length=3),
    EventField("device", "text", required=False, max_length=32),
    EventField("country", "text", required=False, max_length=64),
)

FIELD_NAMES: Final[tuple[str, ...]] = tuple(f.name for f in EVENT_FIELDS)
REQUIRED_FIELDS: Final[tuple[str, ...]] = tuple(f.name for f in EVENT_FIELDS if f.required)
TYPED_FIELDS: Final[tuple[str, ...]] = tuple(
    f.name for f in EVENT_FIELDS if f.kind in ("timestamp", "money", "integer")
)

# Columns an adapter may add beside the canonical ones, for its format's own rules
# (NULL in rows of every other format): the invoice number of Online Retail lines.
ADAPTER_FIELDS: Final[tuple[str, ...]] = ("invoice_no",)

# User ids of checkouts without a customer account start with this: their money counts in
# revenue, but customer analytics (metrics, segments, lifetime value) leave them out.
GUEST_USER_PREFIX: Final = "guest:"

# The CSV layout the original pipelines wrote; accepted byte for byte.
SEED_COLUMNS: Final[tuple[str, ...]] = (
    "event_id",
    "event_type",
    "product_id",
    "user_id",
    "event_timestamp",
    "quantity",
    "price",
)


class InputFormat(StrEnum):
    """Closed set of input layouts; the file extension and header decide which applies."""

    SEED = "seed"
    CANONICAL = "canonical"
    JSONL = "jsonl"
    REES46 = "rees46"  # the public REES46 clickstream export (read only)
    ONLINE_RETAIL = "online-retail"  # the UCI Online Retail invoice lines (read only)


# File-name suffixes the file source picks up (gzip of either is fine).
DATA_SUFFIXES: Final[tuple[str, ...]] = (
    ".csv",
    ".jsonl",
    ".ndjson",
    ".csv.gz",
    ".jsonl.gz",
    ".ndjson.gz",
)
