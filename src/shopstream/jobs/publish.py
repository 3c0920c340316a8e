"""Publish job results to Kafka (seed 003's ``daily-aggregations`` and
``data-quality-alerts`` topics) when ``SHOPSTREAM_KAFKA_BOOTSTRAP`` is set."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, Final

from shopstream.errors import TransientError
from shopstream.sources.kafka_config import client_config
from shopstream.sources.kafka_topics import ensure_topic

DAILY_TOPIC: Final = "daily-aggregations"
QUALITY_TOPIC: Final = "data-quality-alerts"
FLUSH_SECONDS: Final = 30.0
TOPIC_PARTITIONS: Final = 1  # results are few; one partition keeps them in order


def publish(bootstrap: str, topic: str, records: Iterable[tuple[str, dict[str, Any]]]) -> int:
    """Send ``(key, value)`` records as JSON and wait for every delivery."""
    from confluent_kafka import Producer

    ensure_topic(bootstrap, topic, TOPIC_PARTITIONS)
    producer = Producer(client_config(bootstrap, {"enable.idempotence": True}))
    sent = 0
    for key, value in records:
        producer.produce(topic, key=key.encode(), value=json.dumps(value, default=str).encode())
        sent += 1
        producer.poll(0)
    if producer.flush(FLUSH_SECONDS) > 0:
        raise TransientError(f"Kafka did not confirm every message to {topic} in time")
    return sent
