"""Row rules split a frame into passing and failing rows, with every broken rule named."""

from __future__ import annotations

import polars as pl

from shopstream.parse.validate import split_valid
from shopstream.validation.rules import Rule

RULES = (
    Rule("price_positive", "a price above zero", (("price", "price > 0"),)),
    Rule(
        "known_type", "a known event type", (("event_type", "event_type IN ('view', 'purchase')"),)
    ),
    Rule(
        "both_present",
        "price and type present",
        (("price", "price IS NOT NULL"), ("event_type", "event_type IS NOT NULL")),
    ),
)
PREDICATES = {rule.name: rule.predicate for rule in RULES}
FRAME = pl.DataFrame(
    {"price": [1.0, -1.0, None, 2.0], "event_type": ["view", "teleport", "view", "purchase"]}
)


def test_failing_rows_list_every_rule_they_break_and_null_counts_as_broken() -> None:
    valid, invalid, counts = split_valid(FRAME, PREDICATES, RULES)
    assert valid.to_dicts() == [
        {"price": 1.0, "event_type": "view"},
        {"price": 2.0, "event_type": "purchase"},
    ]
    assert invalid["rules"].to_list() == [
        ["price_positive", "known_type"],
        ["price_positive", "both_present"],
    ]
    # Each row names the fields at fault; a rule over several names only the failing ones.
    assert invalid["fields"].to_list() == [["price", "event_type"], ["price"]]
    assert counts == {"price_positive": 2, "known_type": 1, "both_present": 1}


def test_without_quarantine_rules_every_row_passes() -> None:
    valid, invalid, counts = split_valid(FRAME, {}, RULES)
    assert valid.equals(FRAME)
    assert invalid.height == 0 and invalid.schema["rules"] == pl.List(pl.String)
    assert not counts
