"""Executor side: each task parses its files (or Kafka messages), validates the rows and
writes them into staging tables of its own (:mod:`shopstream.store.staging`), all in one
Python worker, and hands the driver only a summary — its files' ledger outcomes and one
row of counts. No event row reaches the driver, and none goes back through the JVM
(measured: that round trip cost four times the parsing).

A task splits its partition as the embedded engine splits a batch, with the same
evaluator of the same rule definitions (:func:`shopstream.parse.validate.split_valid`):
rows that broke a rule (with the fields at fault) and structural rejections go to
quarantine in their stored form; the rest are the batch's valid rows, duplicates included
(the driver's commit keeps the first row of each id, by source and line, as the embedded
engine does).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

import polars as pl
import pyarrow as pa

from shopstream.contract import QUARANTINE_SCHEMA
from shopstream.engines.spark.parse import (
    FILE,
    OUTCOME_FIELDS,
    QUARANTINE,
    ROW,
    local_path,
    parse_files,
    parse_messages,
    spark_ddl,
)
from shopstream.parse.mapping import MappingChoice
from shopstream.parse.normalize import EVENT_SCHEMA
from shopstream.parse.validate import split_valid
from shopstream.schema import FIELD_NAMES
from shopstream.store.connection import connect
from shopstream.store.copy import quarantine_for_copy
from shopstream.store.ledger import paths_held
from shopstream.store.staging import stage_partition
from shopstream.validation.limits import ReadLimits

PART: Final = "part"


@dataclass(frozen=True, slots=True)
class StagePlan:
    """What every task of one micro-batch needs (pickled to the executors)."""

    url: str
    prefix: str  # the batch's staging tables start with this
    batch_id: int
    predicates: dict[str, str]
    choice: MappingChoice
    limits: ReadLimits
    excerpt_bytes: int


SUMMARY_SCHEMA: Final = pa.schema(
    [
        *OUTCOME_FIELDS,  # kind FILE: a ledger outcome; kind PART: a task's counts below
        ("events_table", pa.string()),
        ("quarantine_table", pa.string()),
        ("staged_events", pa.int64()),
        ("quarantine_rows", pa.int64()),
        ("quarantined_records", pa.int64()),
        ("rule_names", pa.list_(pa.string())),
        ("rule_counts", pa.list_(pa.int64())),
    ]
)
_OUTCOME_COLUMNS: Final = [name for name, _ in OUTCOME_FIELDS]


def summary_ddl() -> str:
    """``SUMMARY_SCHEMA`` as a Spark DDL string."""
    return spark_ddl(SUMMARY_SCHEMA)


def stage_files(
    batches: Iterator[pa.RecordBatch],
    *,
    plan: StagePlan,
) -> Iterator[pa.RecordBatch]:
    """``mapInArrow`` body for files: ``binaryFile`` rows (path, content) in,
    :data:`SUMMARY_SCHEMA` rows out. Files the ledger already holds (a new checkpoint lists
    them again) are left out here, by each task for its own files, so that the driver never
    has to list a batch's files itself."""
    yield _staged(parse_files(_not_held(batches, plan.url), plan.choice, plan.limits), plan)


def _not_held(batches: Iterator[pa.RecordBatch], url: str) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        paths = [local_path(p) for p in batch.column("path").to_pylist()]
        held = paths_held(url, paths)
        yield batch.filter(pa.array([p not in held for p in paths])) if held else batch


def stage_messages(
    batches: Iterator[pa.RecordBatch],
    *,
    plan: StagePlan,
) -> Iterator[pa.RecordBatch]:
    """``mapInArrow`` body for Kafka: the source's rows (topic, partition, offset, value)
    in, :data:`SUMMARY_SCHEMA` rows out."""
    yield _staged(parse_messages(batches, plan.limits, plan.choice), plan)


def _staged(parsed: Iterator[pa.RecordBatch], plan: StagePlan) -> pa.RecordBatch:
    """Validate the task's parsed rows with the shared rule evaluator, stage them, and
    summarise: everything in this one Python worker, so rows never go back to the JVM."""
    from pyspark import TaskContext

    context = TaskContext.get()
    part = context.partitionId() if context is not None else 0
    received = [pl.from_arrow(batch) for batch in parsed if batch.num_rows]
    frames = [f for f in received if isinstance(f, pl.DataFrame)]
    if not frames:
        return _summary(pl.DataFrame(), _part_row(None, None, 0, 0, 0, Counter()))
    frame = pl.concat(frames)
    kind = pl.col("kind")
    rows = frame.filter(kind == ROW).drop("rules", "fields")
    passing, failing, _ = split_valid(rows, plan.predicates)
    quarantine = split_quarantine(frame.filter(kind == QUARANTINE), failing)
    events = passing.select(
        *(pl.col(name).cast(EVENT_SCHEMA[name]) for name in FIELD_NAMES), "source", "line_no"
    )
    with connect(plan.url) as conn:
        staged = stage_partition(
            conn,
            plan.prefix,
            part,
            events,
            quarantine_for_copy(quarantine, plan.batch_id, plan.excerpt_bytes),
        )
    counts: Counter[str] = Counter()
    for rules in quarantine["rules"].to_list():
        counts.update(rules)
    return _summary(
        frame.filter(kind == FILE),
        _part_row(
            staged.events_table, staged.quarantine_table, staged.events,
            staged.quarantine_rows, staged.quarantined_records, counts,
        ),
    )  # fmt: skip


def split_quarantine(structural: pl.DataFrame, failing: pl.DataFrame) -> pl.DataFrame:
    """Structural rejections and rows that broke a rule, as one quarantine frame (a row
    without a line stands for its whole file)."""
    quarantine = pl.concat(
        [
            part.select(
                "source", "line_no", pl.lit("row").alias("scope"), "rules", "raw", "raw_bytes",
                "format", "header", "raw_size", "raw_sha256", "fields",
                pl.col("records").fill_null(1),
            ).cast(pl.Schema(QUARANTINE_SCHEMA))
            for part in (structural, failing)
        ]
    )  # fmt: skip
    return quarantine.with_columns(
        pl.when(pl.col("line_no").is_null()).then(pl.lit("file")).otherwise("scope").alias("scope")
    )


def _part_row(
    events_table: str | None,
    quarantine_table: str | None,
    events: int,
    quarantine_rows: int,
    quarantined_records: int,
    counts: Counter[str],
) -> dict[str, object]:
    return {
        "kind": PART,
        "events_table": events_table,
        "quarantine_table": quarantine_table,
        "staged_events": events,
        "quarantine_rows": quarantine_rows,
        "quarantined_records": quarantined_records,
        "rule_names": list(counts),
        "rule_counts": list(counts.values()),
    }


def _summary(files: pl.DataFrame, part: dict[str, object]) -> pa.RecordBatch:
    outcomes = files.select(_OUTCOME_COLUMNS).to_dicts() if files.height else []
    rows = [*outcomes, part]
    return pa.RecordBatch.from_pylist(rows, schema=SUMMARY_SCHEMA)
