"""The rule predicates in force now: the rules as data, with today's configured limits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shopstream.settings import Settings
from shopstream.validation.rules import RuleParams, render_rules


def current_rules(settings: Settings) -> dict[str, str]:
    """Rule predicates with today's limits (the future-time bound and the retention horizon
    move with the clock)."""
    moment = datetime.now(UTC)
    now = moment.replace(tzinfo=None)
    days = settings.retention_events_days
    horizon = None if days is None else settings.days_before(days, moment)
    params = RuleParams(
        max_event_time=now + timedelta(seconds=settings.max_future_seconds),
        min_event_time=horizon.replace(tzinfo=None) if horizon else None,
        max_price=settings.max_price,
        max_quantity=settings.max_quantity,
        custom_event_types=tuple(t.strip().lower() for t in settings.custom_event_types),
    )
    return render_rules(params)
