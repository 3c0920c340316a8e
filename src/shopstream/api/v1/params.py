"""Query parameters shared by the endpoints, validated into clear 422 answers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Final

from fastapi import HTTPException, Query, status

# Text that goes to PostgreSQL: no control characters (a NUL cannot be stored at all).
PRINTABLE: Final = r"^[^\x00-\x1f\x7f]*$"
MAX_SPAN: Final = timedelta(days=400)
MAX_LIMIT: Final = 500


def _invalid(field: str, message: str) -> HTTPException:
    return HTTPException(
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        [{"loc": ["query", field], "msg": message, "type": "value_error"}],
    )


@dataclass(frozen=True, slots=True)
class TimeWindow:
    start: datetime
    end: datetime


def time_window(
    start: Annotated[
        datetime | None,
        Query(alias="from", description="Window start, ISO 8601 (default: `to` - 24 h)."),
    ] = None,
    end: Annotated[
        datetime | None, Query(alias="to", description="Window end, exclusive (default: now).")
    ] = None,
) -> TimeWindow:
    """A time window; times without a zone are UTC."""
    end = _utc(end) if end is not None else datetime.now(UTC)
    start = _utc(start) if start is not None else end - timedelta(days=1)
    if start >= end:
        raise _invalid("from", "must be before `to`")
    if end - start > MAX_SPAN:
        raise _invalid("from", f"the window may span at most {MAX_SPAN.days} days")
    return TimeWindow(start, end)


@dataclass(frozen=True, slots=True)
class DayRange:
    first: date
    last: date


def day_range(
    first: Annotated[
        date | None, Query(alias="from", description="First day (default: `to` - 6 days).")
    ] = None,
    last: Annotated[
        date | None, Query(alias="to", description="Last day, inclusive (default: today, UTC).")
    ] = None,
) -> DayRange:
    last = last if last is not None else datetime.now(UTC).date()
    first = first if first is not None else last - timedelta(days=6)
    if first > last:
        raise _invalid("from", "must not be after `to`")
    if last - first > MAX_SPAN:
        raise _invalid("from", f"the range may span at most {MAX_SPAN.days} days")
    return DayRange(first, last)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"At most {MAX_LIMIT}.")]
Offset = Annotated[int, Query(ge=0, le=10_000_000)]
