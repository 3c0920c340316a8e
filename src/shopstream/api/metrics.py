"""``/metrics`` of the API process: request latency, plus pipeline totals from ``batches``.

The pipeline figures are read from the database at each scrape, so they cover every
engine and runner that writes batches, and survive restarts.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final

import psycopg
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from psycopg_pool import ConnectionPool

from shopstream.metrics import BATCH_SECONDS_BUCKETS

REQUEST_SECONDS_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

_PIPELINE: Final = """
SELECT coalesce(sum(rows_read), 0), coalesce(sum(rows_loaded), 0),
       coalesce(sum(duplicates_in_batch + duplicates_in_store), 0),
       coalesce(sum(late_events), 0), count(*),
       coalesce(sum((parse_ms + load_ms) / 1000.0), 0),
       extract(epoch FROM now() - max(committed_at))::float8,
       coalesce(sum(rows_quarantined), 0)
  FROM batches
"""
_BY_RULE: Final = """
SELECT rule, sum(count::bigint) FROM batches, jsonb_each_text(quarantined_by_rule) AS r(rule, count)
 GROUP BY rule ORDER BY rule
"""
# The latest result of each quality check, and ShopStream's firing data alerts.
_QUALITY: Final = """
SELECT DISTINCT ON (suite, expectation, column_name)
       suite, expectation, coalesce(column_name, ''), success,
       extract(epoch FROM checked_at)::float8
  FROM data_quality_logs
 ORDER BY suite, expectation, column_name, check_id DESC
"""
_FIRING: Final = """
SELECT rule, severity, count(*) FROM alerts WHERE resolved_at IS NULL GROUP BY 1, 2
"""
_DURATIONS: Final = """
SELECT (SELECT count(*) FROM batches WHERE (parse_ms + load_ms) / 1000.0 <= b)
  FROM unnest(%s::float8[]) AS b ORDER BY b
"""


class PipelineCollector(Collector):
    """Totals of every committed batch, read from the database at each scrape."""

    def __init__(self, pool: ConnectionPool[psycopg.Connection[Any]]) -> None:
        self._pool = pool

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily]:
        with self._pool.connection() as conn:
            row = conn.execute(_PIPELINE).fetchone()
            by_rule = conn.execute(_BY_RULE).fetchall()
            buckets = conn.execute(_DURATIONS, (list(BATCH_SECONDS_BUCKETS),)).fetchall()
            checks = conn.execute(_QUALITY).fetchall()
            firing = conn.execute(_FIRING).fetchall()
        assert row is not None
        read, loaded, duplicates, late, batches, seconds, since, quarantined = row
        for name, doc, value in (
            ("shopstream_pipeline_events_read", "Input rows read, all batches", read),
            ("shopstream_pipeline_events_loaded", "Rows inserted into events", loaded),
            ("shopstream_pipeline_events_duplicate", "Rows dropped as duplicates", duplicates),
            ("shopstream_pipeline_events_late", "Events older than the horizon", late),
            ("shopstream_pipeline_rows_quarantined", "Input rows quarantined", quarantined),
        ):
            yield CounterMetricFamily(name, doc, value=int(value))
        rules = CounterMetricFamily(
            "shopstream_pipeline_events_quarantined", "Quarantined rows by rule", labels=["rule"]
        )
        for rule, count in by_rule:
            rules.add_metric([str(rule)], int(count))
        yield rules
        yield HistogramMetricFamily(
            "shopstream_pipeline_batch_seconds",
            "Parse + load time of committed batches",
            buckets=[
                *((str(b), int(n)) for b, (n,) in zip(BATCH_SECONDS_BUCKETS, buckets, strict=True)),
                ("+Inf", int(batches)),
            ],
            sum_value=float(seconds),
        )
        passed = GaugeMetricFamily(
            "shopstream_quality_check_success",
            "1 if the latest run of the quality check passed, else 0",
            labels=["suite", "expectation", "column"],
        )
        checked = GaugeMetricFamily(
            "shopstream_quality_check_timestamp_seconds",
            "When the quality check last ran",
            labels=["suite", "expectation", "column"],
        )
        for suite, expectation, column, success, at in checks:
            passed.add_metric([suite, expectation, column], 1.0 if success else 0.0)
            checked.add_metric([suite, expectation, column], float(at))
        yield passed
        yield checked
        alerts = GaugeMetricFamily(
            "shopstream_alerts_firing", "ShopStream's own data alerts firing now",
            labels=["rule", "severity"],
        )  # fmt: skip
        for rule, severity, count in firing:
            alerts.add_metric([rule, severity], float(count))
        yield alerts
        freshness = GaugeMetricFamily(
            "shopstream_pipeline_seconds_since_last_commit", "Seconds since the last commit"
        )
        if since is not None:
            freshness.add_metric([], float(since))
        yield freshness


class ApiMetrics:
    """A registry of its own (several apps may live in one test process)."""

    def __init__(self, pool: ConnectionPool[psycopg.Connection[Any]]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Histogram(
            "shopstream_api_request_seconds",
            "API request latency",
            ["route", "method", "status"],
            buckets=REQUEST_SECONDS_BUCKETS,
            registry=self.registry,
        )
        self.db_errors = Counter(
            "shopstream_api_db_errors", "Database errors while answering", registry=self.registry
        )
        self.registry.register(PipelineCollector(pool))
