"""Kafka topics as a source, exactly once: offsets commit in the batch's own transaction.

Each poll turns the messages of each partition into in-memory "files" the embedded engine
already reads: JSON events become JSON Lines, seed-format CSV lines a CSV under the seed
header. A message's line in such a file maps back to its offset, so quarantine rows name
``kafka://topic/partition`` and the offset, and the dead-letter copy keeps its exact bytes.

Positions live in PostgreSQL (``source_offsets``). On assignment the consumer seeks to them;
each batch may only advance a partition from the offset stored when it was read, so after a
rebalance or a crash two consumers can never both commit the same range. Broker-side
commits follow the database commit and only feed lag monitoring.
"""

from __future__ import annotations

import bisect
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from shopstream.contract import IncomingFile, MessageOrigin, ParsedBatch, SourceOffset
from shopstream.metrics import KAFKA_LAG
from shopstream.sources.base import Source
from shopstream.sources.kafka_config import client_config
from shopstream.sources.kafka_framing import as_files, chunk_path, first_line
from shopstream.validation.limits import ReadLimits

log = logging.getLogger(__name__)

Partition = tuple[str, int]
ResetPolicy = Literal["earliest", "latest"]
StoredOffsets = Callable[[str, list[Partition]], dict[Partition, int]]

PROCESSED_TOPIC: Final = "processed-events"
_WATERMARK_TIMEOUT_S: Final = 10.0
_FLUSH_TIMEOUT_S: Final = 60.0
_PROBE_SECONDS: Final = 3.0
_STALL_WARNING_S: Final = 60.0
_CONSUMER_DEFAULTS: Final[dict[str, str | int | float | bool]] = {
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
    "auto.offset.reset": "error",  # positions come from the database, never guessed
    "session.timeout.ms": 6000,
    "heartbeat.interval.ms": 1000,
    "fetch.wait.max.ms": 50,
    "queued.max.messages.kbytes": 65536,
}


class OffsetOutOfRangeError(Exception):
    """A stored offset lies outside what the broker still holds for that partition."""


@dataclass(slots=True)
class _Chunk:
    """The messages of one partition behind one in-memory file."""

    topic: str
    partition: int
    generation: int
    first_line: int  # line number of the first message (2 under a CSV header)
    offsets: list[int]
    values: list[bytes]
    position: SourceOffset


@dataclass(slots=True)
class _PartitionState:
    expected: int | None  # offset stored in the database that the next batch continues
    next_offset: int  # next message to hand out
    generation: int = 0
    high_watermark: int = 0


class KafkaSource(Source):
    """Consumes ``topics`` as member of ``group``."""

    def __init__(
        self,
        bootstrap: str,
        topics: list[str],
        group: str,
        *,
        stored_offsets: StoredOffsets,
        reset_offsets: ResetPolicy | None = None,
        dead_letters: bool = True,
        emit_processed: bool = False,
    ) -> None:
        self.name = f"kafka://{bootstrap}/{','.join(topics)}"
        self.group = group
        self._stored_offsets = stored_offsets
        self._reset = reset_offsets
        self._partitions: dict[Partition, _PartitionState] = {}
        self._chunks: dict[str, _Chunk] = {}
        self._reseek: set[Partition] = set()
        self._awaiting_assignment = True  # before the first one, and during rebalances
        self._awaiting_since = time.monotonic()
        self._last_stall_warning = 0.0
        self._bootstrap = bootstrap
        self._consumer = Consumer(
            client_config(bootstrap, {**_CONSUMER_DEFAULTS, "group.id": group})
        )
        self._producer = (
            Producer(client_config(bootstrap, {"linger.ms": 5, "enable.idempotence": True}))
            if dead_letters or emit_processed
            else None
        )
        self._dead_letters = dead_letters
        self._emit_processed = emit_processed
        self._consumer.subscribe(topics, on_assign=self._on_assign, on_revoke=self._on_revoke)

    # -- group membership ---------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Seek every new partition to its offset in the database (or its start if none)."""
        keys = [(tp.topic, tp.partition) for tp in partitions]
        stored = self._stored_offsets(self.group, keys)
        for tp in partitions:
            key = (tp.topic, tp.partition)
            low, high = consumer.get_watermark_offsets(tp, timeout=_WATERMARK_TIMEOUT_S)
            expected = stored.get(key)
            if expected is not None and expected > high:
                high = self._fetched_end(key, high)
            start = low if expected is None else self._checked_start(key, expected, low, high)
            tp.offset = start
            self._partitions[key] = _PartitionState(expected, start, high_watermark=high)
            log.info("assigned %s[%d] from offset %d", tp.topic, tp.partition, start)
        consumer.assign(partitions)
        self._awaiting_assignment = False

    def _checked_start(self, key: Partition, stored: int, low: int, high: int) -> int:
        if low <= stored <= high:
            return stored
        where = f"{key[0]}[{key[1]}]: stored offset {stored} is outside {low}..{high}"
        if self._reset is None:
            raise OffsetOutOfRangeError(
                f"{where} on the broker (topic recreated, or retention removed messages); "
                "restart with --reset-offsets earliest|latest to continue from there"
            )
        start = low if self._reset == "earliest" else high
        log.warning("%s; --reset-offsets %s continues from %d", where, self._reset, start)
        return start

    def _fetched_end(self, key: Partition, listed_high: int) -> int:
        """The end offset as a fetch reports it.

        Some Kafka-protocol brokers list the base offset of the last record batch as the
        end; a fetch response's high watermark is always exact, so check it before calling
        a stored offset past the end out of range.
        """
        probe = Consumer(client_config(self._bootstrap, {"group.id": f"{self.group}-end-probe"}))
        try:
            probe.assign([TopicPartition(key[0], key[1], listed_high)])
            deadline = time.monotonic() + _PROBE_SECONDS
            while time.monotonic() < deadline:
                probe.consume(num_messages=1, timeout=0.2)
                _, high = probe.get_watermark_offsets(TopicPartition(*key), cached=True)
                if high >= 0:
                    return max(listed_high, int(high))
            return listed_high
        finally:
            probe.close()

    def _end_offset(self, key: Partition) -> int:
        """The larger of the listed end and the last fetch's high watermark."""
        tp = TopicPartition(*key)
        _, listed = self._consumer.get_watermark_offsets(tp, timeout=_WATERMARK_TIMEOUT_S)
        _, fetched = self._consumer.get_watermark_offsets(tp, cached=True)
        return max(int(listed), int(fetched))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Forget revoked partitions; a batch in flight still commits only if still valid."""
        for tp in partitions:
            self._partitions.pop((tp.topic, tp.partition), None)
            self._reseek.discard((tp.topic, tp.partition))
        consumer.unassign()
        self._awaiting_assignment = True
        self._awaiting_since = time.monotonic()

    # -- Source -------------------------------------------------------------------------

    def poll(self, max_rows_hint: int) -> list[IncomingFile]:
        self._warn_if_rebalance_stalls()
        self._seek_abandoned()
        messages = self._consumer.consume(num_messages=max_rows_hint, timeout=0.05)
        by_partition: dict[tuple[str | None, int | None], list[Message]] = {}
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    continue
                raise KafkaException(error)
            by_partition.setdefault((message.topic(), message.partition()), []).append(message)
        items: list[IncomingFile] = []
        for (topic, partition), batch in by_partition.items():
            key = (str(topic), int(partition or 0))
            state = self._partitions.get(key)
            if state is None:
                continue  # revoked meanwhile
            offsets = [int(m.offset() or 0) for m in batch]
            fresh = bisect.bisect_left(offsets, state.next_offset)  # skip any fetched pre-seek
            if fresh < len(batch):
                values = [m.value() or b"" for m in batch[fresh:]]
                items.extend(self._chunk_files(key, state, offsets[fresh:], values))
        return items

    def _warn_if_rebalance_stalls(self) -> None:
        """A group whose rebalance never completes (a broker holding on to a dead member)
        stops consuming silently; say so once a minute."""
        now = time.monotonic()
        waited = now - self._awaiting_since
        stalled = self._awaiting_assignment and waited > _STALL_WARNING_S
        if stalled and now - self._last_stall_warning > _STALL_WARNING_S:
            self._last_stall_warning = now
            log.warning(
                "consumer group %s: no partition assignment for %.0f s; the rebalance is "
                "not completing (check the broker and the group's other members)",
                self.group,
                waited,
            )

    def _chunk_files(
        self, key: Partition, state: _PartitionState, offsets: list[int], values: list[bytes]
    ) -> list[IncomingFile]:
        end = offsets[-1] + 1
        _, cached_high = self._consumer.get_watermark_offsets(TopicPartition(*key), cached=True)
        state.high_watermark = max(state.high_watermark, cached_high, end)
        position = SourceOffset(
            consumer_group=self.group,
            topic=key[0],
            partition=key[1],
            start=state.expected,
            end=end,
            high_watermark=state.high_watermark,
        )
        state.expected = end
        state.next_offset = end
        files = []
        for suffix, part_offsets, part_values, data in as_files(offsets, values):
            path = chunk_path(key[0], key[1], part_offsets, suffix)
            self._chunks[path] = _Chunk(
                key[0],
                key[1],
                state.generation,
                first_line(suffix),
                part_offsets,
                part_values,
                position,
            )
            origin = MessageOrigin(
                key[0], key[1], first_line(suffix), tuple(part_offsets), position
            )
            files.append(IncomingFile(path, data, content_hash="", came_from=origin))
        return files

    def read_limits(self, limits: ReadLimits) -> ReadLimits:
        return limits.for_messages()

    def before_load(self, batch: ParsedBatch, items: list[IncomingFile]) -> None:
        """Dead letters (and processed events) are acknowledged before the batch commits.

        After a crash before the commit they are produced again: at least once, keyed by
        ``topic/partition/offset`` (dead letters) or event id (processed) for dedupe.
        """
        if self._producer is None:
            return
        if self._dead_letters and batch.quarantine.height:
            self._produce_dead_letters(batch, items)
        if self._emit_processed and batch.events.height:
            lines = batch.events.write_ndjson().encode().split(b"\n")
            for event_id, line in zip(batch.events["event_id"].to_list(), lines, strict=False):
                self._produce(PROCESSED_TOPIC, str(event_id).encode(), line, None)
        remaining = self._producer.flush(_FLUSH_TIMEOUT_S)
        if remaining:
            raise KafkaException(f"{remaining} dead-letter/processed messages not acknowledged")

    def _produce_dead_letters(self, batch: ParsedBatch, items: list[IncomingFile]) -> None:
        values: dict[tuple[str, int, int], bytes] = {}
        for item in items:
            chunk = self._chunks[item.path]
            for offset, value in zip(chunk.offsets, chunk.values, strict=True):
                values[(chunk.topic, chunk.partition, offset)] = value
        for source, offset, rules in batch.quarantine.select(
            "source", "line_no", "rules"
        ).iter_rows():
            topic, partition = str(source).removeprefix("kafka://").rsplit("/", 1)
            key = (topic, int(partition), int(offset))
            headers: list[tuple[str, str | bytes | None]] = [
                ("rule", ",".join(rules).encode()),
                ("source_topic", topic.encode()),
                ("source_partition", partition.encode()),
                ("source_offset", str(offset).encode()),
            ]
            self._produce(f"{topic}-dlq", "/".join(map(str, key)).encode(), values[key], headers)

    def _produce(
        self,
        topic: str,
        key: bytes,
        value: bytes,
        headers: list[tuple[str, str | bytes | None]] | None,
    ) -> None:
        assert self._producer is not None
        while True:
            try:
                self._producer.produce(topic, value=value, key=key, headers=headers)
                return
            except BufferError:
                self._producer.poll(0.05)

    def committed(self, items: list[IncomingFile]) -> None:
        commits: dict[Partition, int] = {}
        for item in items:
            chunk = self._chunks.pop(item.path)
            commits[(chunk.topic, chunk.partition)] = chunk.position.end
        for (topic, partition), end in commits.items():
            state = self._partitions.get((topic, partition))
            if state is not None:
                KAFKA_LAG.labels(topic, str(partition)).set(max(state.high_watermark - end, 0))
        owned = [
            TopicPartition(t, p, o) for (t, p), o in commits.items() if (t, p) in self._partitions
        ]
        if owned:
            try:  # for lag monitoring only: the database holds the real positions
                self._consumer.commit(offsets=owned, asynchronous=True)
            except KafkaException as error:
                log.debug("broker-side offset commit failed: %s", error)

    def abandoned(self, items: list[IncomingFile]) -> None:
        for item in items:
            chunk = self._chunks.pop(item.path)
            key = (chunk.topic, chunk.partition)
            state = self._partitions.get(key)
            if state is not None and chunk.generation == state.generation:
                self._reseek.add(key)

    def _seek_abandoned(self) -> None:
        """Go back to the stored offsets of partitions whose batch did not commit."""
        if not self._reseek:
            return
        keys = sorted(k for k in self._reseek if k in self._partitions)
        self._reseek.clear()
        stored = self._stored_offsets(self.group, keys)
        for key in keys:
            state = self._partitions[key]
            low, _ = self._consumer.get_watermark_offsets(
                TopicPartition(*key), timeout=_WATERMARK_TIMEOUT_S
            )
            state.expected = stored.get(key)
            state.next_offset = state.expected if state.expected is not None else low
            state.generation += 1
            self._consumer.seek(TopicPartition(key[0], key[1], state.next_offset))
            log.info("re-reading %s[%d] from stored offset %d", *key, state.next_offset)

    def idle(self) -> bool:
        if self._awaiting_assignment or self._chunks or self._reseek:
            return False
        return all(
            state.next_offset >= self._end_offset(key) for key, state in self._partitions.items()
        )

    def close(self) -> None:
        self._consumer.close()
        if self._producer is not None:
            self._producer.flush(_FLUSH_TIMEOUT_S)
