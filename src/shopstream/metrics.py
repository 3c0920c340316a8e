"""Prometheus metrics of the ingesting process (``shopstream run --metrics-port``).

The runner counts what it reads and where each row went, times its batches and reports
database failures and retries. The API process exports the same totals read from the
``batches`` table (see :mod:`shopstream.api.metrics`), whichever engine wrote them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

from prometheus_client import Counter, Gauge, Histogram

BATCH_SECONDS_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

EVENTS_READ = Counter("shopstream_events_read", "Input rows read")
EVENTS_LOADED = Counter("shopstream_events_loaded", "Rows inserted into events")
EVENTS_DUPLICATE = Counter("shopstream_events_duplicate", "Rows dropped as duplicates")
EVENTS_QUARANTINED = Counter(
    "shopstream_events_quarantined", "Rows quarantined, by rule (a row may break several)", ["rule"]
)
BATCH_SECONDS = Histogram(
    "shopstream_batch_seconds",
    "Parse + load time of a committed batch",
    buckets=BATCH_SECONDS_BUCKETS,
)
FRESHNESS_SECONDS = Gauge(
    "shopstream_freshness_seconds", "Commit time minus the newest event time of the last batch"
)
DB_ERRORS = Counter("shopstream_db_errors", "Database operations that failed", ["kind"])
DB_RETRIES = Counter("shopstream_db_retries", "Database operations retried after a failure")
LAST_COMMIT = Gauge(
    "shopstream_last_commit_timestamp_seconds", "Unix time of this runner's last committed batch"
)
INPUT_WAITING = Gauge(
    "shopstream_input_waiting", "1 while the source holds input not yet committed, else 0"
)
KAFKA_LAG = Gauge(
    "shopstream_kafka_consumer_lag",
    "Messages behind the partition's end after the last commit",
    ["topic", "partition"],
)


def record_batch(
    *,
    read: int,
    loaded: int,
    duplicates: int,
    quarantined_by_rule: dict[str, int],
    seconds: float,
    newest_event: datetime | None,
) -> None:
    EVENTS_READ.inc(read)
    EVENTS_LOADED.inc(loaded)
    EVENTS_DUPLICATE.inc(duplicates)
    for rule, count in quarantined_by_rule.items():
        EVENTS_QUARANTINED.labels(rule).inc(count)
    BATCH_SECONDS.observe(seconds)
    LAST_COMMIT.set_to_current_time()
    if newest_event is not None:
        newest = newest_event if newest_event.tzinfo else newest_event.replace(tzinfo=UTC)
        FRESHNESS_SECONDS.set((datetime.now(UTC) - newest).total_seconds())


def record_db_failure(error: BaseException, *, retried: bool) -> None:
    DB_ERRORS.labels(type(error).__name__).inc()
    if retried:
        DB_RETRIES.inc()
