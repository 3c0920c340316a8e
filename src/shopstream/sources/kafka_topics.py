"""Topics ShopStream writes to (the generator's events, the jobs' results): created on
first use with the partitions asked for, left alone when they exist."""

from __future__ import annotations

import logging
from typing import Final

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from shopstream.sources.kafka_config import client_config

log = logging.getLogger(__name__)
_CREATE_TIMEOUT_S: Final = 30.0


def ensure_topic(bootstrap: str, topic: str, partitions: int) -> None:
    """Create ``topic`` with ``partitions`` partitions unless it exists already."""
    admin = AdminClient(client_config(bootstrap))
    existing = admin.list_topics(timeout=_CREATE_TIMEOUT_S).topics
    if topic in existing:
        return
    futures = admin.create_topics([NewTopic(topic, num_partitions=partitions)])
    try:
        futures[topic].result(timeout=_CREATE_TIMEOUT_S)
    except KafkaException as error:
        if error.args[0].name() != "TOPIC_ALREADY_EXISTS":
            raise
    log.info("created topic %s with %d partitions", topic, partitions)
