"""Volume and revenue anomalies against a robust seasonal baseline: the same hour of the
week in the previous weeks (median and MAD), never a fixed threshold.

A shop's Monday 9:00 looks nothing like its Sunday 3:00; comparing an hour with the same
hour of earlier weeks absorbs that, and median/MAD let one odd week (a sale, an outage)
not move the baseline.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import psycopg

from shopstream.alerting.state import Signal

MIN_WEEKS: Final = 3  # fewer earlier weeks with data: no baseline, no alert
MAD_TO_SIGMA: Final = 1.4826

_EVENTS: Final = """
SELECT count(*)::float8 FROM events WHERE event_timestamp >= %(start)s AND event_timestamp < %(end)s
"""
_REVENUE: Final = """
SELECT shopstream_currency(currency), sum(shopstream_net_amount(event_type, price, quantity))
  FROM events
 WHERE event_timestamp >= %(start)s AND event_timestamp < %(end)s
   AND event_type IN ('purchase', 'refund')
 GROUP BY 1
"""


@dataclass(frozen=True, slots=True)
class Baseline:
    median: float
    spread: float  # a robust sigma, floored so a flat history does not alert on noise

    def score(self, value: float) -> float:
        return (value - self.median) / self.spread


def baseline(history: Sequence[float], min_relative: float) -> Baseline | None:
    values = [v for v in history if v > 0]
    if len(values) < MIN_WEEKS:
        return None
    median = statistics.median(values)
    mad = statistics.median(abs(v - median) for v in values)
    return Baseline(median, max(MAD_TO_SIGMA * mad, min_relative * median, 1.0))


def last_complete_hour(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)


def anomalies(
    conn: psycopg.Connection[Any],
    now: datetime,
    *,
    weeks: int,
    threshold: float,
    min_relative: float,
) -> list[Signal]:
    """Signals for the last complete hour whose events or revenue leave the baseline."""
    hour = last_complete_hour(now)
    windows = [
        {"start": hour - timedelta(weeks=k), "end": hour - timedelta(weeks=k, hours=-1)}
        for k in range(weeks + 1)
    ]
    counts = [float(_one(conn, _EVENTS, w)) for w in windows]
    revenue: list[dict[str, float]] = [
        {str(cur): float(total) for cur, total in conn.execute(_REVENUE, w).fetchall()}
        for w in windows
    ]
    signals: list[Signal] = []
    when = f"{hour:%a %H:00} UTC"
    found = _deviation(counts[0], counts[1:], threshold, min_relative)
    if found is not None:
        signals.append(
            Signal(
                fingerprint="anomaly:volume",
                rule="volume_anomaly",
                severity="warning",
                summary=f"{counts[0]:,.0f} events in the hour from {hour:%Y-%m-%d %H:00} UTC;"
                f" the usual {when} is {found.median:,.0f}",
                value=counts[0],
                labels={"hour": hour.isoformat()},
            )
        )
    for currency in sorted({c for week in revenue for c in week}):
        now_value = revenue[0].get(currency, 0.0)
        found = _deviation(
            now_value, [week.get(currency, 0.0) for week in revenue[1:]], threshold, min_relative
        )
        if found is not None:
            signals.append(
                Signal(
                    fingerprint=f"anomaly:revenue:{currency}",
                    rule="revenue_anomaly",
                    severity="warning",
                    summary=f"revenue {now_value:,.2f} {currency} in the hour from"
                    f" {hour:%Y-%m-%d %H:00} UTC; the usual {when} is {found.median:,.2f}",
                    value=now_value,
                    labels={"currency": currency, "hour": hour.isoformat()},
                )
            )
    return signals


def _deviation(
    value: float, history: Sequence[float], threshold: float, min_relative: float
) -> Baseline | None:
    found = baseline(history, min_relative)
    if found is None or abs(found.score(value)) <= threshold:
        return None
    return found


def _one(conn: psycopg.Connection[Any], query: str, params: dict[str, datetime]) -> Any:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]
