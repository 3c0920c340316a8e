"""Every validation rule ShopStream applies, as data.

Row rules are SQL boolean expressions over the normalised batch columns: the canonical
fields (typed: ``event_timestamp`` naive UTC, ``price`` double, ``quantity`` bigint) and,
for each typed field, its text as received in ``raw_<field>``. Both Polars
(``pl.sql_expr``) and Spark (``F.expr``) evaluate this dialect, so no engine keeps a copy
of any rule. A predicate that evaluates to NULL counts as broken on every engine.

Structural rules are the ones a row breaks before it has columns at all (bad bytes, wrong
column count); the parser of each engine reports them under these names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from string import Template
from typing import Final, Literal

from shopstream.schema import (
    EVENT_FIELDS,
    ORDER_EVENT_TYPES,
    PRODUCT_EVENT_TYPES,
    REQUIRED_FIELDS,
    EventType,
)

Severity = Literal["quarantine", "warn"]


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule: a row that breaks a ``quarantine`` rule is kept out of ``events``.

    ``checks`` are (field, predicate) pairs whose conjunction is the rule: a failing row
    records the fields whose own check failed. A rule about one field names it alone."""

    name: str
    description: str
    checks: tuple[tuple[str, str], ...]
    severity: Severity = "quarantine"

    @property
    def predicate(self) -> str:
        if len(self.checks) == 1:
            return self.checks[0][1]
        return " AND ".join(f"({check})" for _, check in self.checks)

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.checks)


@dataclass(frozen=True, slots=True)
class RuleParams:
    """The configurable limits that rule predicates refer to as ``${name}``."""

    max_event_time: datetime
    max_price: float
    max_quantity: int
    custom_event_types: tuple[str, ...] = ()  # declared by SHOPSTREAM_CUSTOM_EVENT_TYPES
    min_event_time: datetime | None = None  # the events retention horizon (None: none)

    def as_sql_literals(self) -> dict[str, str]:
        known = [t.value for t in EventType] + [
            t for t in self.custom_event_types if _SAFE_NAME.fullmatch(t)
        ]
        return {
            "max_event_time": _timestamp(self.max_event_time),
            "min_event_time": _timestamp(self.min_event_time or datetime(1, 1, 1)),
            "max_price": repr(float(self.max_price)),
            "max_quantity": str(int(self.max_quantity)),
            "event_types": ", ".join(f"'{t}'" for t in known),
        }


def _timestamp(moment: datetime) -> str:
    return f"CAST('{moment.replace(microsecond=0).isoformat(sep=' ')}' AS TIMESTAMP)"


_SAFE_NAME: Final = re.compile(r"[a-z0-9_.:-]{1,64}")
_UUID_PATTERN: Final = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"


def _listed(types: tuple[EventType, ...]) -> str:
    return ", ".join(f"'{t.value}'" for t in types)


_PRODUCT_TYPES: Final = _listed(PRODUCT_EVENT_TYPES)
_ORDER_TYPES: Final = _listed(ORDER_EVENT_TYPES)

ROW_RULES: Final[tuple[Rule, ...]] = (
    Rule(
        "required_fields",
        "event_id, event_type, user_id and event_timestamp are present",
        tuple(
            (name, f"{'raw_' if name == 'event_timestamp' else ''}{name} IS NOT NULL")
            for name in REQUIRED_FIELDS
        ),
    ),
    Rule(
        "event_id_uuid",
        "event_id is a UUID (a mapping's [event_id] derive_from makes one from other fields)",
        (("event_id", f"event_id IS NULL OR regexp_like(event_id, '{_UUID_PATTERN}')"),),
    ),
    Rule(
        "event_type_known",
        "event_type is one of "
        + ", ".join(t.value for t in EventType)
        + ", or a custom type declared by the mapping or SHOPSTREAM_CUSTOM_EVENT_TYPES",
        (
            (
                "event_type",
                "event_type IS NULL OR event_type IN (${event_types}) OR custom_type IS NOT NULL",
            ),
        ),
    ),
    Rule(
        "product_required",
        "a product event ("
        + ", ".join(t.value for t in PRODUCT_EVENT_TYPES)
        + ") names its product_id",
        (
            (
                "product_id",
                f"event_type IS NULL OR event_type NOT IN ({_PRODUCT_TYPES})"
                " OR product_id IS NOT NULL",
            ),
        ),
    ),
    Rule(
        "timestamp_parsable",
        "event_timestamp is a date and time (ISO 8601 or YYYY-MM-DD HH:MM:SS, UTC by default)",
        (("event_timestamp", "raw_event_timestamp IS NULL OR event_timestamp IS NOT NULL"),),
    ),
    Rule(
        "timestamp_not_future",
        "event_timestamp is at most the configured margin ahead of the clock",
        (
            (
                "event_timestamp",
                "event_timestamp IS NULL"
                " OR event_timestamp <= coalesce(rule_max_event_time, ${max_event_time})",
            ),
        ),
    ),
    Rule(
        "timestamp_within_retention",
        "event_timestamp is within the events retention policy"
        " (SHOPSTREAM_RETENTION_EVENTS_DAYS): an older event is no longer in PostgreSQL to be"
        " told apart from a duplicate",
        (("event_timestamp", "event_timestamp IS NULL OR event_timestamp >= ${min_event_time}"),),
    ),
    Rule(
        "price_numeric", "price is a number", (("price", "raw_price IS NULL OR price IS NOT NULL"),)
    ),
    Rule(
        "quantity_integer",
        "quantity is a whole number",
        (("quantity", "raw_quantity IS NULL OR quantity IS NOT NULL"),),
    ),
    Rule(
        "purchase_price_quantity",
        "a purchase or refund has price > 0 and quantity >= 1",
        (
            ("price", f"event_type IS NULL OR event_type NOT IN ({_ORDER_TYPES}) OR price > 0"),
            (
                "quantity",
                f"event_type IS NULL OR event_type NOT IN ({_ORDER_TYPES}) OR quantity >= 1",
            ),
        ),
    ),
    Rule(
        "price_range",
        "price is between 0 and the configured maximum (SHOPSTREAM_MAX_PRICE, or the"
        " mapping's [rules] max_price)",
        (
            (
                "price",
                "price IS NULL OR (price >= 0 AND price <= coalesce(rule_max_price, ${max_price}))",
            ),
        ),
    ),
    Rule(
        "quantity_range",
        "quantity is between 0 and the configured maximum (SHOPSTREAM_MAX_QUANTITY, or the"
        " mapping's [rules] max_quantity)",
        (
            (
                "quantity",
                "quantity IS NULL"
                " OR (quantity >= 0 AND quantity <= coalesce(rule_max_quantity, ${max_quantity}))",
            ),
        ),
    ),
    Rule(
        "field_length",
        "text fields fit their column",
        tuple(
            (f.name, f"{f.name} IS NULL OR length({f.name}) <= {f.max_length}")
            for f in EVENT_FIELDS
            if f.max_length is not None
        ),
    ),
    Rule(
        "currency_code",
        "currency is a three-letter ISO 4217 code such as EUR (revenue is kept per currency)",
        (("currency", "currency IS NULL OR regexp_like(currency, '^[A-Z]{3}$')"),),
    ),
    # Online Retail lines (``invoice_no`` set by its adapter; NULL for every other format).
    Rule(
        "retail_bad_debt_adjustment",
        "an Online Retail bad-debt adjustment (invoice A...) is bookkeeping, not a sale",
        (("invoice_no", "invoice_no IS NULL OR invoice_no NOT LIKE 'A%'"),),
    ),
    Rule(
        "retail_quantity_sign",
        "an Online Retail line has Quantity > 0, or < 0 on a cancellation (invoice C...)",
        (("quantity", "invoice_no IS NULL OR quantity IS NULL OR quantity > 0"),),
    ),
    Rule(
        "retail_price_positive",
        "an Online Retail line has UnitPrice > 0",
        (("price", "invoice_no IS NULL OR price IS NULL OR price > 0"),),
    ),
)

assert all(
    "${" not in check for rule in ROW_RULES if len(rule.checks) > 1 for _, check in rule.checks
), "a rule over several fields must not take parameters (see parse.validate)"


class StructuralRule(StrEnum):
    """Rules a row breaks before it can be split into fields."""

    ENCODING = "encoding"
    COLUMN_COUNT = "column_count"
    JSON_SYNTAX = "json_syntax"
    JSON_TOO_DEEP = "json_too_deep"
    LINE_TOO_LONG = "line_too_long"
    FIELD_ENCODING = "field_encoding"


STRUCTURAL_RULES: Final[dict[StructuralRule, str]] = {
    StructuralRule.ENCODING: "the line is not valid UTF-8 or contains NUL bytes",
    StructuralRule.COLUMN_COUNT: "the line has a different number of fields than the header",
    StructuralRule.JSON_SYNTAX: "the line is not a JSON object",
    StructuralRule.JSON_TOO_DEEP: "the JSON object nests deeper than 1,000 levels",
    StructuralRule.LINE_TOO_LONG: "the line is longer than SHOPSTREAM_MAX_LINE_BYTES",
    StructuralRule.FIELD_ENCODING: "a field decodes to NUL or an invalid code point"
    " (a JSON escape such as \\u0000 or a lone surrogate); PostgreSQL text cannot hold it",
}


class FileRejection(StrEnum):
    """Reasons a whole file is quarantined instead of its rows."""

    UNREADABLE = "file_unreadable"
    NOT_TEXT = "file_not_text"
    UNKNOWN_HEADER = "file_unknown_header"
    CHANGED_AFTER_INGESTION = "file_changed_after_ingestion"
    FORMAT_MISMATCH = "file_format_mismatch"
    TOO_LARGE = "file_too_large"
    COMPRESSION_RATIO = "file_compression_ratio"
    HEADER_TOO_LONG = "file_header_too_long"
    MOSTLY_BROKEN = "file_mostly_broken"


FILE_REJECTIONS: Final[dict[FileRejection, str]] = {
    FileRejection.UNREADABLE: "the file cannot be read or decompressed",
    FileRejection.NOT_TEXT: "the header is not UTF-8 text (binary junk?)",
    FileRejection.UNKNOWN_HEADER: "the header lacks required event columns",
    FileRejection.CHANGED_AFTER_INGESTION: "a file of this name was ingested with other content",
    FileRejection.FORMAT_MISMATCH: "the file is not in the format given with --format",
    FileRejection.TOO_LARGE: "the file (decompressed) is larger than SHOPSTREAM_MAX_FILE_BYTES",
    FileRejection.COMPRESSION_RATIO: "the gzip stream expands beyond"
    " SHOPSTREAM_MAX_COMPRESSION_RATIO (a decompression bomb?)",
    FileRejection.HEADER_TOO_LONG: "the CSV header is longer than SHOPSTREAM_MAX_LINE_BYTES",
    FileRejection.MOSTLY_BROKEN: "almost every record is broken (the wrong kind of file?);"
    " a sample of them is kept",
}


def render_rules(params: RuleParams, rules: tuple[Rule, ...] = ROW_RULES) -> dict[str, str]:
    """Rule name -> predicate with the configured limits filled in."""
    return {rule.name: _render(rule.predicate, params) for rule in rules}


def render_checks(
    params: RuleParams, rules: tuple[Rule, ...] = ROW_RULES
) -> dict[str, tuple[tuple[str, str], ...]]:
    """Rule name -> its (field, predicate) checks with the limits filled in: evaluated on
    failing rows only, to name the fields at fault."""
    return {
        rule.name: tuple((name, _render(check, params)) for name, check in rule.checks)
        for rule in rules
    }


def _render(template: str, params: RuleParams) -> str:
    rendered = Template(template).safe_substitute(params.as_sql_literals())
    if "${" in rendered:
        raise ValueError(f"a rule with unknown parameters: {template}")
    return rendered


RULE_DESCRIPTIONS: Final[dict[str, str]] = {
    **{rule.name: rule.description for rule in ROW_RULES},
    **{rule.value: text for rule, text in STRUCTURAL_RULES.items()},
    **{rule.value: text for rule, text in FILE_REJECTIONS.items()},
}
