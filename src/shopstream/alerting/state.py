"""The ``alerts`` table: a condition fires once, stays one row while it holds, resolves once.

A caller evaluates the conditions it owns (its *scope*: rule names and, optionally, label
values) and hands over the ones that hold now. Those not yet firing open a row; those
firing already are refreshed; firing rows of the scope that no longer hold are resolved.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

Severity = Literal["info", "warning", "critical"]


@dataclass(frozen=True, slots=True)
class Signal:
    """A condition that holds now."""

    fingerprint: str
    rule: str
    severity: Severity
    summary: str
    value: float | None = None
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Scope:
    """The conditions one evaluator owns: rules, narrowed to some label values or to some
    fingerprints."""

    rules: tuple[str, ...]
    label: str | None = None
    values: tuple[str, ...] = ()
    fingerprints: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Changes:
    fired: tuple[str, ...]
    resolved: tuple[str, ...]


def sync(conn: psycopg.Connection[Any], scope: Scope, holding: Iterable[Signal]) -> Changes:
    """Make the firing alerts of ``scope`` exactly ``holding`` (one transaction)."""
    signals = {s.fingerprint: s for s in holding}
    with conn.transaction():
        fired = []
        for signal in signals.values():
            row = conn.execute(
                """INSERT INTO alerts (fingerprint, rule, severity, labels, summary, value)
                   VALUES (%s, %s, %s, %s, %s, %s)
                   ON CONFLICT (fingerprint) WHERE resolved_at IS NULL DO UPDATE
                      SET last_seen_at = clock_timestamp(), value = excluded.value,
                          summary = excluded.summary, severity = excluded.severity
                   RETURNING (xmax = 0) AS inserted""",
                (signal.fingerprint, signal.rule, signal.severity,
                 Jsonb(dict(signal.labels)), signal.summary, signal.value),
            ).fetchone()  # fmt: skip
            if row and row[0]:
                fired.append(signal.fingerprint)
        resolved = conn.execute(
            """UPDATE alerts SET resolved_at = clock_timestamp()
                WHERE resolved_at IS NULL AND rule = ANY(%(rules)s)
                  AND (%(label)s::text IS NULL OR labels ->> %(label)s = ANY(%(values)s))
                  AND (cardinality(%(only)s::text[]) = 0 OR fingerprint = ANY(%(only)s))
                  AND NOT fingerprint = ANY(%(holding)s)
            RETURNING fingerprint""",
            {
                "rules": list(scope.rules),
                "label": scope.label,
                "values": list(scope.values),
                "only": list(scope.fingerprints),
                "holding": list(signals),
            },
        ).fetchall()
    return Changes(tuple(fired), tuple(str(r[0]) for r in resolved))


def alert_rows(
    conn: psycopg.Connection[Any],
    *,
    state: Literal["firing", "resolved", "all"] = "all",
    limit: int = 100,
    after: int | None = None,
) -> list[dict[str, Any]]:
    """Alerts, newest first (the API and ``alerts list``)."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            """SELECT alert_id, fingerprint, rule, severity, labels, summary, value, started_at,
                      last_seen_at, resolved_at, notified_firing_at, notified_resolved_at,
                      delivery_error
                 FROM alerts
                WHERE (%(state)s = 'all'
                       OR (%(state)s = 'firing') = (resolved_at IS NULL))
                  AND (%(after)s::bigint IS NULL OR alert_id < %(after)s)
                ORDER BY alert_id DESC LIMIT %(limit)s""",
            {"state": state, "limit": limit, "after": after},
        ).fetchall()
