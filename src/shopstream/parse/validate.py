"""Evaluate the rule definitions of :mod:`shopstream.validation.rules` with Polars SQL."""

from __future__ import annotations

from collections import Counter

import polars as pl

from shopstream.validation.rules import ROW_RULES, Rule


def check_rules(frame: pl.DataFrame, predicates: dict[str, str]) -> pl.DataFrame:
    """One boolean column per rule: True when the row passes. NULL counts as broken."""
    return frame.select(
        pl.sql_expr(sql).fill_null(value=False).alias(name) for name, sql in predicates.items()
    )


def split_valid(
    frame: pl.DataFrame, predicates: dict[str, str], rules: tuple[Rule, ...] = ROW_RULES
) -> tuple[pl.DataFrame, pl.DataFrame, Counter[str]]:
    """(rows passing every quarantine rule, failing rows with a ``rules`` list, counts).

    The list of broken rules is built for the failing rows only: they are few, and a list
    column over every row costs more than evaluating the rules themselves.
    """
    blocking = [r.name for r in rules if r.severity == "quarantine" and r.name in predicates]
    checks = check_rules(frame, predicates)
    if not blocking:
        return (
            frame,
            frame.clear().with_columns(
                rules=pl.lit([], dtype=pl.List(pl.String)),
                fields=pl.lit([], dtype=pl.List(pl.String)),
            ),
            Counter(),
        )
    passing = checks.select(pl.all_horizontal(blocking)).to_series()
    failing_checks = checks.filter(~passing)
    broken = pl.concat_list(
        [pl.when(~pl.col(name)).then(pl.lit(name)).otherwise(None) for name in blocking]
    ).list.drop_nulls()
    counts = Counter(
        {
            name: int(n)
            for name, n in failing_checks.select((~pl.col(b)).sum() for b in blocking)
            .row(0, named=True)
            .items()
            if n
        }
    )
    failing = frame.filter(~passing).with_columns(
        failing_checks.select(broken.alias("rules")).to_series()
    )
    return frame.filter(passing), with_fields_at_fault(failing, rules), counts


def with_fields_at_fault(
    failing: pl.DataFrame, rules: tuple[Rule, ...] = ROW_RULES
) -> pl.DataFrame:
    """Failing rows (with their ``rules`` list) plus ``fields``: for each broken rule, the
    fields whose own check failed. Rules over several fields carry no parameters (checked
    at import), so every engine names the same fields from the rows alone."""
    if not failing.height:
        return failing.with_columns(fields=pl.lit([], dtype=pl.List(pl.String)))
    parts = []
    for rule in rules:
        hit = pl.col("rules").list.contains(rule.name)
        if len(rule.checks) == 1:
            parts.append(pl.when(hit).then(pl.lit(rule.checks[0][0])))
            continue
        for name, check in rule.checks:
            failed = ~pl.sql_expr(check).fill_null(value=False)
            parts.append(pl.when(hit & failed).then(pl.lit(name)))
    named = pl.concat_list(parts).list.drop_nulls().list.unique(maintain_order=True)
    return failing.with_columns(named.alias("fields"))
