"""With a Kafka bootstrap configured, the daily job publishes its aggregates to
``daily-aggregations`` and quality alerts go to ``data-quality-alerts`` (seed 003)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg

from shopstream.jobs.catalog import Jobs
from shopstream.jobs.publish import DAILY_TOPIC, QUALITY_TOPIC
from shopstream.jobs.runs import RetryPolicy
from shopstream.settings import Settings
from tests.fixtures.history import insert_events, migrated
from tests.fixtures.kafka import read_topic


def test_daily_aggregates_and_quality_alerts_reach_their_topics(
    database_url: str, kafka_broker: str, tmp_path: Path
) -> None:
    url = migrated(database_url)
    day = date(2026, 4, 7)
    noon = datetime(2026, 4, 7, 12, tzinfo=UTC)
    with psycopg.connect(url) as conn:
        insert_events(
            conn,
            [(noon + timedelta(minutes=n), "purchase", f"u{n}", 5.0, cur)
             for n, cur in enumerate(["EUR", "EUR", "USD"])]
            + [(noon, "sale_of_the_century", "u9", None, None)],  # not a known type
        )  # fmt: skip
    settings = Settings(kafka_bootstrap=kafka_broker, rollups=False, home=tmp_path)
    jobs = Jobs(settings, url, policy=RetryPolicy(0, 0), only_suites=("events",))

    [daily] = jobs.run("daily", day=day)
    assert daily.status == "success" and daily.details["published"] == daily.rows
    aggregates = [json.loads(m.value()) for m in read_topic(kafka_broker, DAILY_TOPIC)]  # type: ignore[attr-defined]
    assert len(aggregates) == daily.rows
    purchases = {a["currency"]: a["total_events"] for a in aggregates
                 if a["event_type"] == "purchase"}  # fmt: skip
    assert purchases == {"EUR": 2, "USD": 1}

    [quality] = jobs.run("quality", day=day)
    key = "quality:events:expect_column_values_to_be_in_set:event_type"
    assert quality.details["alerts_fired"] == [key]
    published = [json.loads(m.value()) for m in read_topic(kafka_broker, QUALITY_TOPIC)]  # type: ignore[attr-defined]
    assert published == [{"fingerprint": key, "status": "firing"}]
