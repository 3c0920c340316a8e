"""Getting a mapping right without writing anything: sample a source, propose a mapping,
and run samples through the very parse, map and validate path a run takes."""

from __future__ import annotations

import tomllib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from shopstream.contract import IncomingFile
from shopstream.parse.batch import build_batch
from shopstream.parse.mapping import MappingChoice, mapping_from_toml
from shopstream.parse.reader import decode_container
from shopstream.parse.suggest import Proposal, propose
from shopstream.schema import DATA_SUFFIXES
from shopstream.sources.kafka_config import client_config
from shopstream.sources.kafka_framing import as_files
from shopstream.sources.select import KafkaSpec, parse_kafka


@dataclass(frozen=True, slots=True)
class DryRun:
    """What a run would do with the sampled records."""

    read: int
    loaded: int
    duplicates: int
    ignored: int
    quarantined_by_rule: Counter[str]
    fields_at_fault: Counter[str]
    unmapped: tuple[str, ...]
    formats: tuple[str, ...]


def sample(source: str, records: int) -> list[IncomingFile]:
    """Up to ``records`` records of a directory, a file or ``kafka://…``, as files."""
    kafka = parse_kafka(source)
    if kafka is not None:
        return _sample_kafka(kafka, records)
    path = Path(source)
    files = (
        sorted(p for p in path.rglob("*") if p.name.endswith(DATA_SUFFIXES))
        if path.is_dir()
        else [path]
    )
    found: list[IncomingFile] = []
    left = records
    for file in files:
        if left <= 0:
            break
        data = decode_container(file.read_bytes(), file.name)
        lines = data.splitlines(keepends=True)
        csv = not file.name.removesuffix(".gz").endswith((".jsonl", ".ndjson"))
        kept = lines[: left + 1] if csv else lines[:left]
        left -= len(kept) - (1 if csv else 0)
        found.append(IncomingFile(str(file).removesuffix(".gz"), b"".join(kept), "", decoded=True))
    return found


def _sample_kafka(spec: KafkaSpec, records: int) -> list[IncomingFile]:
    """Read messages from the start of each partition with a throwaway group that never
    commits, so sampling moves no consumer's position."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        client_config(
            spec.bootstrap,
            {
                "group.id": "shopstream-mapping-sample",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            },
        )
    )
    try:
        metadata = consumer.list_topics(timeout=10)
        partitions = [
            TopicPartition(topic, p, 0)
            for topic in spec.topics
            for p in sorted(metadata.topics[topic].partitions)
            if topic in metadata.topics
        ]
        consumer.assign(partitions)
        messages: dict[tuple[str, int], list[tuple[int, bytes]]] = {}
        taken = idle = 0
        while taken < records and idle < 5:
            batch = consumer.consume(min(500, records - taken), timeout=1)
            idle = idle + 1 if not batch else 0
            for message in batch:
                topic, partition, offset = message.topic(), message.partition(), message.offset()
                if (
                    message.error() is None
                    and topic
                    and partition is not None
                    and offset is not None
                ):
                    messages.setdefault((topic, partition), []).append(
                        (offset, message.value() or b"")
                    )
                    taken += 1
    finally:
        consumer.close()
    files = []
    for (topic, partition), items in messages.items():
        offsets = [o for o, _ in items]
        for suffix, _, _, data in as_files(offsets, [v for _, v in items]):
            files.append(IncomingFile(f"kafka://{topic}/{partition}.{suffix}", data, ""))
    return files


def dry_run(files: list[IncomingFile], choice: MappingChoice, predicates: dict[str, str]) -> DryRun:
    batch = build_batch(files, source="dry run", predicates=predicates, choice=choice)
    fields: Counter[str] = Counter()
    for names in batch.quarantine["fields"].to_list():
        fields.update(names or ())
    unmapped = {c for f in batch.files for c in f.ignored_columns}
    unmapped.update(c for columns in batch.unmapped_fields.values() for c in columns)
    return DryRun(
        read=batch.rows_read,
        loaded=batch.events.height,
        duplicates=batch.duplicates_in_batch,
        ignored=batch.rows_ignored,
        quarantined_by_rule=batch.quarantined_by_rule,
        fields_at_fault=fields,
        unmapped=tuple(sorted(unmapped)),
        formats=tuple(sorted({f.input_format for f in batch.files if f.input_format})),
    )


def suggest(files: list[IncomingFile]) -> Proposal:
    """A mapping proposed from the sampled records of the first file that has any."""
    for item in files:
        json = item.name.endswith((".jsonl", ".ndjson"))
        try:
            records = (
                pl.read_ndjson(item.data, infer_schema_length=None)
                if json
                else pl.read_csv(item.data, infer_schema=False, truncate_ragged_lines=True)
            )
        except pl.exceptions.PolarsError:
            continue
        if not json:
            records = records.rename({c: c.strip().lower() for c in records.columns})
        if records.height:
            return propose(records, csv=not json)
    return Proposal("# no records to learn from\n", ("user_id", "event_timestamp", "event_type"))


def proposal_mapping(proposal: Proposal, hash_key: bytes, custom: frozenset[str]) -> MappingChoice:
    mapping = mapping_from_toml(tomllib.loads(proposal.toml), name="suggested", where="proposal")
    return MappingChoice(mapping, False, hash_key, custom)
