"""Publish generated events to Kafka: one message per event, keyed by user id."""

from __future__ import annotations

import logging
from typing import Final

import polars as pl
from confluent_kafka import KafkaError, Producer

from shopstream.generate.writer import render
from shopstream.schema import InputFormat
from shopstream.sources.kafka_config import client_config

log = logging.getLogger(__name__)
_FLUSH_TIMEOUT_S: Final = 30.0


class DeliveryError(Exception):
    """The broker did not acknowledge some messages."""


class KafkaWriter:
    """A row sink that produces each rendered row (JSON, or a seed CSV line) as a message."""

    def __init__(self, bootstrap: str, topic: str, fmt: InputFormat = InputFormat.JSONL) -> None:
        if fmt is InputFormat.CANONICAL:
            raise ValueError("Kafka messages are JSON events or seed-format CSV lines")
        self.topic = topic
        self.fmt = fmt
        self.sent = 0
        self._failures: list[str] = []
        self._producer = Producer(
            client_config(
                bootstrap,
                {"linger.ms": 20, "batch.num.messages": 10_000, "compression.type": "lz4"},
            )
        )

    def write(self, rows: pl.DataFrame, stamp: float) -> int:
        lines = render(rows, self.fmt).split(b"\n")
        if self.fmt is InputFormat.SEED:
            lines = lines[1:]  # each message is one line, without the header
        keys = rows["user_id"].cast(pl.String).fill_null("").to_list()
        for key, value in zip(keys, lines[: rows.height], strict=True):
            self._produce(key.encode(), value)
        self._producer.poll(0)
        self.sent += rows.height
        return rows.height

    def _produce(self, key: bytes, value: bytes) -> None:
        while True:
            try:
                self._producer.produce(
                    self.topic, value=value, key=key, on_delivery=self._delivered
                )
                return
            except BufferError:
                self._producer.poll(0.05)  # local queue full: let deliveries drain

    def _delivered(self, error: KafkaError | None, _message: object) -> None:
        if error is not None:
            self._failures.append(str(error))

    def flush(self) -> None:
        """Wait until every message is acknowledged by the broker; fail if any was not."""
        remaining = self._producer.flush(_FLUSH_TIMEOUT_S)
        if remaining or self._failures:
            first = self._failures[0] if self._failures else "timed out"
            raise DeliveryError(
                f"{remaining + len(self._failures)} messages not delivered to {self.topic}: {first}"
            )
