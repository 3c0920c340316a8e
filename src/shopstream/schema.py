"""The one definition of a ShopStream event: fields, types and accepted input formats.

Every engine, the generator and the store derive their columns from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Literal


class EventType(StrEnum):
    """The canonical event types. A mapping or SHOPSTREAM_CUSTOM_EVENT_TYPES may declare
    custom ones: stored under their own name, part of sessions, outside commerce rollups."""

    PAGE_VIEW = "page_view"
    VIEW = "view"  # a product view
    ADD_TO_CART = "add_to_cart"
    REMOVE_FROM_CART = "remove_from_cart"
    ADD_TO_WISHLIST = "add_to_wishlist"
    BEGIN_CHECKOUT = "begin_checkout"
    PURCHASE = "purchase"
    REFUND = "refund"  # a returned purchase: its amount counts against net revenue
    SEARCH = "search"
    LOGIN = "login"
    SIGN_UP = "sign_up"


# Types about one product: these need a product_id (the others may carry one).
PRODUCT_EVENT_TYPES: Final[tuple[EventType, ...]] = (
    EventType.VIEW,
    EventType.ADD_TO_CART,
    EventType.REMOVE_FROM_CART,
    EventType.ADD_TO_WISHLIST,
    EventType.PURCHASE,
    EventType.REFUND,
)
# Types that move money: these need a price and a quantity.
ORDER_EVENT_TYPES: Final[tuple[EventType, ...]] = (EventType.PURCHASE, EventType.REFUND)


FieldKind = Literal["uuid", "text", "timestamp", "money", "integer", "json"]


@dataclass(frozen=True, slots=True)
class EventField:
    name: str
    kind: FieldKind
    required: bool
    max_length: int | None = None


EVENT_FIELDS: Final[tuple[EventField, ...]] = (
    EventField("event_id", "uuid", required=True),
    EventField("event_type", "text", required=True, max_length=64),
    EventField("user_id", "text", required=True, max_length=128),
    EventField("product_id", "text", required=False, max_length=128),
    EventField("event_timestamp", "timestamp", required=True),
    EventField("session_id", "text", required=False, max_length=128),
    EventField("category", "text", required=False, max_length=128),
    EventField("brand", "text", required=False, max_length=128),
    EventField("price", "money", required=False),
    EventField("quantity", "integer", required=False),
    EventField("currency", "text", required=False, max_length=3),
    EventField("device", "text", required=False, max_length=32),
    EventField("country", "text", required=False, max_length=64),
    EventField("order_id", "text", required=False, max_length=128),
    EventField("page_url", "text", required=False, max_length=4096),
    EventField("referrer", "text", required=False, max_length=4096),
    EventField("user_agent", "text", required=False, max_length=1024),
    EventField("ip_address", "text", required=False, max_length=128),
    EventField("utm_source", "text", required=False, max_length=256),
    EventField("utm_medium", "text", required=False, max_length=256),
    EventField("utm_campaign", "text", required=False, max_length=256),
    EventField("search_query", "text", required=False, max_length=1024),
    EventField("payment_method", "text", required=False, max_length=64),
    # Every field of the record that the mapping does not name, as a JSON object.
    EventField("properties", "json", required=False),
)

FIELD_NAMES: Final[tuple[str, ...]] = tuple(f.name for f in EVENT_FIELDS)
REQUIRED_FIELDS: Final[tuple[str, ...]] = tuple(f.name for f in EVENT_FIELDS if f.required)
TYPED_FIELDS: Final[tuple[str, ...]] = tuple(
    f.name for f in EVENT_FIELDS if f.kind in ("timestamp", "money", "integer")
)
# Fields a source may send, mapped or by their canonical name (``properties`` is built).
SOURCE_FIELDS: Final[tuple[str, ...]] = tuple(f.name for f in EVENT_FIELDS if f.kind != "json")

# Columns a mapping adds beside the canonical ones, for the rules only (never stored):
# the invoice number of Online Retail lines (its format's own rules), ``custom_type`` (set
# when a mapping declared the row's type custom) and the mapping's own rule limits
# (``rule_<setting>``, NULL where the configured limit applies).
ADAPTER_FIELDS: Final[tuple[str, ...]] = (
    "invoice_no",
    "custom_type",
    "rule_max_price",
    "rule_max_quantity",
    "rule_max_event_time",
)

# User ids of checkouts without a customer account start with this: their money counts in
# revenue, but customer analytics (metrics, segments, lifetime value) leave them out.
GUEST_USER_PREFIX: Final = "guest:"
# ISO 4217's code for "no currency involved": where money rollups keep events that named none.
NO_CURRENCY: Final = "XXX"

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
    STREAMING_EVENT = "streaming-event"  # the Faker generator layout of seeds 000/001
    SEED_JSON = "seed-json"  # seed 003's JSON event schema


# File-name suffixes the file source picks up (gzip of either is fine).
DATA_SUFFIXES: Final[tuple[str, ...]] = (
    ".csv",
    ".jsonl",
    ".ndjson",
    ".csv.gz",
    ".jsonl.gz",
    ".ndjson.gz",
)
