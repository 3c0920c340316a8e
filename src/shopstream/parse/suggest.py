"""Propose a mapping from sample records: field names matched by synonym, nested paths and
event-type values profiled from the values themselves. The proposal is plain TOML for a
person to read and edit, never applied silently."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

import polars as pl

from shopstream.schema import SOURCE_FIELDS, EventType

# Source names seen in the field for each canonical field (lower case, without separators).
SYNONYMS: Final[dict[str, tuple[str, ...]]] = {
    "event_id": ("eventid", "id", "messageid", "eventuuid", "uuid", "transactionid", "txnid"),
    "event_type": ("eventtype", "type", "event", "eventname", "action", "name"),
    "user_id": (
        "userid", "customerid", "customer", "clientid", "visitorid", "accountid", "uid",
        "memberid", "user", "shopperid",
    ),
    "product_id": ("productid", "sku", "itemid", "product", "stockcode", "articleid", "item"),
    "event_timestamp": (
        "eventtimestamp", "timestamp", "ts", "eventtime", "time", "datetime", "createdat",
        "occurredat", "date", "sentat",
    ),
    "session_id": ("sessionid", "session", "usersession", "visitid"),
    "category": ("category", "categoryname", "categorycode", "productcategory"),
    "brand": ("brand", "brandname", "manufacturer"),
    "price": ("price", "unitprice", "amount", "value", "total", "totalamount", "revenue"),
    "quantity": ("quantity", "qty", "count", "units"),
    "currency": ("currency", "currencycode"),
    "device": ("device", "devicetype", "platform"),
    "country": ("country", "countrycode", "geocountry"),
    "order_id": ("orderid", "order", "invoiceno", "invoice", "transactionid"),
    "page_url": ("pageurl", "url", "page", "pagepath", "path"),
    "referrer": ("referrer", "referer", "referrerurl"),
    "user_agent": ("useragent", "ua", "browser"),
    "ip_address": ("ipaddress", "ip", "clientip", "remoteaddr"),
    "utm_source": ("utmsource", "source", "channel"),
    "utm_medium": ("utmmedium", "medium"),
    "utm_campaign": ("utmcampaign", "campaign"),
    "search_query": ("searchquery", "query", "searchterm", "q", "keyword"),
    "payment_method": ("paymentmethod", "payment", "paymenttype"),
}  # fmt: skip

# Event-type values seen in the field, and the canonical type each means.
TYPE_SYNONYMS: Final[dict[str, str]] = {
    "pageview": "page_view", "page": "page_view", "screenview": "page_view",
    "productview": "view", "viewitem": "view", "productviewed": "view", "detail": "view",
    "cart": "add_to_cart", "addtocart": "add_to_cart", "addedtocart": "add_to_cart",
    "productadded": "add_to_cart", "removefromcart": "remove_from_cart",
    "productremoved": "remove_from_cart", "wishlistadd": "add_to_wishlist",
    "addtowishlist": "add_to_wishlist", "wishlist": "add_to_wishlist",
    "begincheckout": "begin_checkout", "checkout": "begin_checkout",
    "checkoutstarted": "begin_checkout", "purchase": "purchase", "order": "purchase",
    "ordercompleted": "purchase", "completecheckout": "purchase", "transaction": "purchase",
    "refund": "refund", "return": "refund", "orderrefunded": "refund", "search": "search",
    "productssearched": "search", "login": "login", "signin": "login", "signup": "sign_up",
    "register": "sign_up", "registration": "sign_up",
}  # fmt: skip
_PERSON_NAMES: Final = frozenset(
    ("name", "customername", "fullname", "firstname", "lastname", "username", "billingname")
)


def _personal(path: str) -> bool:
    """Fields that identify a person: e-mail, phone, a person's name, a postal address."""
    leaf = _squash(path.rsplit(".", 1)[-1])
    postal = "address" in leaf and "ip" not in leaf
    return "email" in leaf or "phone" in leaf or leaf in _PERSON_NAMES or postal


def _squash(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def closest_columns(canonical: str, columns: Iterable[str]) -> list[str]:
    """Source columns that may hold ``canonical``: synonyms first, then similar names."""
    names = list(columns)
    wanted = SYNONYMS.get(canonical, ())
    by_synonym = [c for c in names if _squash(c) in wanted]
    by_spelling = difflib.get_close_matches(canonical, names, n=2, cutoff=0.6)
    return list(dict.fromkeys([*by_synonym, *by_spelling]))[:3]


@dataclass(frozen=True, slots=True)
class Proposal:
    """A proposed mapping as TOML, and what it could not decide."""

    toml: str
    unresolved: tuple[str, ...]


def leaf_paths(schema: pl.Schema, prefix: str = "") -> list[tuple[str, pl.DataType]]:
    """Every dotted path to a non-struct value (lists of structs as ``a[].b``)."""
    found: list[tuple[str, pl.DataType]] = []
    for name, dtype in schema.items():
        path = f"{prefix}{name}"
        if isinstance(dtype, pl.Struct):
            found.extend(leaf_paths(pl.Schema({f.name: f.dtype for f in dtype.fields}), path + "."))
        elif isinstance(dtype, pl.List) and isinstance(dtype.inner, pl.Struct):
            inner = pl.Schema({f.name: f.dtype for f in dtype.inner.fields})
            found.extend(leaf_paths(inner, path + "[]."))
        else:
            found.append((path, dtype))
    return found


def propose(records: pl.DataFrame, *, csv: bool) -> Proposal:
    """A mapping for these sample records (CSV text columns, or JSON as Polars reads it)."""
    paths = leaf_paths(records.schema)
    explode = next(
        (p.split("[]", 1)[0] for p, _ in paths if "[]." in p and "price" in p.lower()), None
    )
    explode = explode or next((p.split("[]", 1)[0] for p, _ in paths if "[]." in p), None)
    usable = [p for p, _ in paths if "[]." not in p or (explode and p.startswith(explode + "[]"))]
    fields: dict[str, str] = {}
    taken: set[str] = set()
    for canonical in SOURCE_FIELDS:
        if canonical in usable and canonical not in taken:
            taken.add(canonical)
            continue
        wanted = SYNONYMS.get(canonical, ())
        leaves = {p: _squash(p.rsplit(".", 1)[-1]) for p in usable if p not in taken}
        match = next((p for p, leaf in leaves.items() if leaf in wanted[:1]), None)
        match = match or next((p for p, leaf in leaves.items() if leaf in wanted), None)
        if match is not None:
            fields[canonical] = match
            taken.add(match)
    lines = ["# Proposed by `shopstream mapping suggest`: check every line, then run", ""]
    if explode:
        lines += ["[source]", f'explode = "{explode}"  # one event per element', ""]
    lines.append("[fields]  # canonical field = source field")
    lines += [f'{k} = "{v}"' for k, v in fields.items()]
    unresolved = []
    type_source = fields.get("event_type", "event_type" if "event_type" in usable else None)
    type_lines, defaults = _event_types(records, type_source)
    if type_source is None:
        defaults.append('event_type = "purchase"  # no event type field: every record is one?')
        unresolved.append("event_type")
    if "quantity" not in fields and "quantity" not in usable:
        defaults.append("quantity = 1  # no quantity field: an order line counts one unit")
    id_source = fields.get("event_id", "event_id" if "event_id" in usable else None)
    lines += ["", '[event_types]  # source value = canonical type | "custom" | "ignore"']
    lines += type_lines
    if defaults:
        lines += ["", "[defaults]", *defaults]
    if id_source is None or not _all_uuids(records, id_source):
        keys = [id_source] if id_source else [p for p in usable if "id" in p.lower()][:3]
        lines += [
            "",
            "[event_id]  # ids missing or not UUIDs: derive stable ones",
            "derive_from = [" + ", ".join(f'"{k}"' for k in keys) + "]",
        ]
    pii = [p for p in usable if _personal(p) and p not in fields.values()]
    if pii or any(p.endswith("ip_address") or p.endswith(".ip") for p in usable):
        lines += ["", "[privacy]"]
        if pii:
            lines.append("drop = [" + ", ".join(f'"{p}"' for p in pii) + "]")
        ip_field = fields.get("ip_address", "ip_address" if "ip_address" in usable else None)
        if ip_field and "." not in ip_field:
            lines.append(f'hash = ["{ip_field}"]')
    for canonical in ("user_id", "event_timestamp"):
        if canonical not in fields and canonical not in usable:
            unresolved.append(canonical)
            lines.insert(2, f"# no field found for {canonical}: name it under [fields]")
    if csv:
        lines.insert(1, "# CSV column names are matched in lower case")
    return Proposal("\n".join(lines) + "\n", tuple(unresolved))


def _event_types(records: pl.DataFrame, source: str | None) -> tuple[list[str], list[str]]:
    if source is None:
        return [], []
    values = _values_at(records, source)
    if values is None:
        return [], []
    canonical = {t.value for t in EventType}
    lines = []
    for value in sorted({str(v).strip().lower() for v in values.drop_nulls().to_list()}):
        if value in canonical:
            continue
        target = TYPE_SYNONYMS.get(_squash(value))
        shown = f'"{target}"' if target else '"custom"  # no canonical meaning found'
        lines.append(f'"{value}" = {shown}')
    return lines, []


def _values_at(records: pl.DataFrame, path: str) -> pl.Series | None:
    parts = path.replace("[]", "").split(".")
    if parts[0] not in records.columns:
        return None
    expr = pl.col(parts[0])
    if "[]" in path:
        expr = expr.explode()
    for part in parts[1:]:
        expr = expr.struct.field(part)
    try:
        return records.select(expr.cast(pl.String)).to_series()
    except pl.exceptions.PolarsError:
        return None


def _all_uuids(records: pl.DataFrame, path: str) -> bool:
    values = _values_at(records, path)
    if values is None:
        return False
    pattern = r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$"
    return bool(values.drop_nulls().str.contains(pattern).all())
