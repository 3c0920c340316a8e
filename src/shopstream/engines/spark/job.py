"""The Spark job: a file stream of whole files (or Spark's Kafka source), parsed,
validated and staged in PostgreSQL by the executors, and committed per micro-batch by the
exactly-once loader on the driver.

Exactly once: each micro-batch commits in one PostgreSQL transaction whose batch record is
keyed ``spark:<query id>:<batch id>`` (unique), so the replay of a batch that Spark's
checkpoint had not yet marked done is a no-op; the file ledger also keeps a file from being
loaded twice by a different query (a new checkpoint). Errors inside ``foreachBatch`` are
never swallowed: Spark stops the query and runs the batch again on restart.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import polars as pl
import pyarrow as pa

from shopstream.contract import (
    FileOutcome,
    FileStatus,
    ParsedBatch,
    StagedPart,
    StagedRows,
    empty_quarantine,
)
from shopstream.engines.spark.parse import FILE
from shopstream.engines.spark.stage import (
    PART,
    StagePlan,
    stage_files,
    stage_messages,
    summary_ddl,
)
from shopstream.errors import StopRequestedError
from shopstream.logs import bind_batch
from shopstream.parse.mapping import NO_CHOICE, MappingChoice
from shopstream.parse.normalize import EVENT_SCHEMA
from shopstream.schema import DATA_SUFFIXES
from shopstream.settings import Settings
from shopstream.sources.select import KafkaSpec
from shopstream.store.connection import connect
from shopstream.store.loader import Loader, LoadPlan, LoadStatus
from shopstream.store.staging import drop_stage
from shopstream.validation.limits import DEFAULT_LIMITS, ReadLimits

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.streaming.query import StreamingQuery

log = logging.getLogger(__name__)


KAFKA_CONNECTOR: Final = "org.apache.spark:spark-sql-kafka-0-10_2.13"
# Spark's error conditions for a missing Kafka connector (4.x names it; 3.x did not).
_CONNECTOR_MISSING: Final = frozenset({"KAFKA_DATA_SOURCE_NOT_ENABLED", "DATA_SOURCE_NOT_FOUND"})


class KafkaConnectorMissingError(Exception):
    """Spark's Kafka source (the spark-sql-kafka-0-10 package) is not on the classpath."""


@dataclass(frozen=True, slots=True)
class SparkJob:
    source: Path | KafkaSpec
    checkpoints: Path  # one checkpoint per source under here
    choice: MappingChoice = NO_CHOICE
    max_files_per_trigger: int | None = None
    max_bytes_per_trigger: int | None = None  # used when no file count is given
    max_offsets_per_trigger: int | None = None
    archive: Path | None = None
    delete: bool = False
    limits: ReadLimits = DEFAULT_LIMITS

    @property
    def label(self) -> str:
        """The source as batch records and logs name it."""
        if isinstance(self.source, KafkaSpec):
            return f"kafka://{self.source.bootstrap}/{','.join(self.source.topics)}"
        return str(self.source)

    @property
    def checkpoint(self) -> Path:
        return self.checkpoints / hashlib.sha256(self.label.encode()).hexdigest()[:16]


def build_query(
    spark: SparkSession,
    job: SparkJob,
    loader: Loader,
    predicates: dict[str, str],
    *,
    until_idle: bool,
    trigger_ms: int,
) -> StreamingQuery:
    holder: dict[str, StreamingQuery] = {}

    def query_id() -> str:
        return str(holder["query"].id)

    stream = (
        _kafka_stream(spark, job.source, job.max_offsets_per_trigger)
        if isinstance(job.source, KafkaSpec)
        else _file_stream(spark, job)
    )
    writer = (
        stream.writeStream.foreachBatch(batch_loader(job, loader, predicates, query_id))
        .option("checkpointLocation", str(job.checkpoint))
        .queryName(f"shopstream_{_digest(job.label)}")
    )
    writer = (
        writer.trigger(availableNow=True)
        if until_idle
        else writer.trigger(processingTime=f"{trigger_ms} milliseconds")
    )
    holder["query"] = writer.start()
    return holder["query"]


def _file_stream(spark: SparkSession, job: SparkJob) -> DataFrame:
    assert isinstance(job.source, Path)
    reader = (
        spark.readStream.format("binaryFile")
        .schema("path STRING, modificationTime TIMESTAMP, length BIGINT, content BINARY")
        .option("pathGlobFilter", "*{" + ",".join(DATA_SUFFIXES) + "}")
        .option("recursiveFileLookup", "false")
    )
    if job.max_files_per_trigger:
        reader = reader.option("maxFilesPerTrigger", str(job.max_files_per_trigger))
    elif job.max_bytes_per_trigger:
        reader = reader.option("maxBytesPerTrigger", str(job.max_bytes_per_trigger))
    if job.archive is not None:
        reader = reader.option("cleanSource", "archive").option(
            "sourceArchiveDir", str(job.archive)
        )
    elif job.delete:
        reader = reader.option("cleanSource", "delete")
    return reader.load(str(job.source))


def _kafka_stream(
    spark: SparkSession, spec: KafkaSpec, max_offsets_per_trigger: int | None
) -> DataFrame:
    """Spark's own Kafka source: offsets live in the query's checkpoint, and each batch
    record is keyed by (query id, batch id), so a replayed batch is a no-op."""
    from pyspark.errors import AnalysisException

    reader = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", spec.bootstrap)
        .option("subscribe", ",".join(spec.topics))
        .option("startingOffsets", "earliest")
    )
    if max_offsets_per_trigger:
        reader = reader.option("maxOffsetsPerTrigger", str(max_offsets_per_trigger))
    try:
        return reader.load()
    except AnalysisException as error:
        if error.getCondition() not in _CONNECTOR_MISSING:
            raise
        raise KafkaConnectorMissingError(
            "Spark's Kafka source is not on the classpath. Add the spark-sql-kafka-0-10 "
            f"package: SHOPSTREAM_SPARK_PACKAGES={KAFKA_CONNECTOR}:<spark version> (resolved "
            "from a Maven repository), SHOPSTREAM_SPARK_JARS=<local jars>, or spark-submit "
            f"--packages {KAFKA_CONNECTOR}:<spark version>."
        ) from error


def batch_loader(
    job: SparkJob, loader: Loader, predicates: dict[str, str], query_id: Callable[[], str]
) -> Callable[[DataFrame, int], None]:
    """The ``foreachBatch`` body: executors parse, validate and stage their rows; the
    driver commits the micro-batch through the loader in one transaction."""
    kafka = isinstance(job.source, KafkaSpec)
    cleaned: list[bool] = []

    def load_batch(batch_df: DataFrame, batch_id: int) -> None:
        with bind_batch(loader.reserve_batch_id()) as reserved:
            if not cleaned:  # a replay after a crash: the query's stages left behind go
                _drop_stage(loader.url, _stage_prefix(query_id()))
                cleaned.append(True)
            load_bound(batch_df, batch_id, reserved)

    def load_bound(batch_df: DataFrame, batch_id: int, reserved: int) -> None:
        started, started_at = time.perf_counter(), datetime.now(UTC)
        prefix = f"{_stage_prefix(query_id())}{batch_id}_"
        _drop_stage(loader.url, prefix)  # an earlier attempt at this batch
        plan = StagePlan(
            url=loader.url, prefix=prefix, batch_id=reserved, predicates=predicates,
            choice=job.choice, limits=job.limits, excerpt_bytes=loader.excerpt_bytes,
        )  # fmt: skip
        if kafka:
            tasks = batch_df.select("topic", "partition", "offset", "value").mapInArrow(
                functools.partial(stage_messages, plan=plan), summary_ddl()
            )
        else:
            tasks = batch_df.select("path", "content").mapInArrow(
                functools.partial(stage_files, plan=plan), summary_ddl()
            )
        summary = tasks.toArrow()
        batch = _staged_batch(
            summary,
            source=job.label,
            key=f"spark:{query_id()}:{batch_id}",
            prefix=prefix,
            started_at=started_at,
            parse_seconds=time.perf_counter() - started,
            file_ledger=not kafka,
        )
        outcome = loader.load(batch, LoadPlan(batch_id=reserved))
        if outcome.status is LoadStatus.ABANDONED:
            raise StopRequestedError(f"spark batch {batch_id}")  # Spark replays it on restart
        if outcome.status is not LoadStatus.COMMITTED:
            _drop_stage(loader.url, prefix)
            if outcome.committed_files is None:
                log.info("spark batch %d was committed before; nothing to do", batch_id)
                return
            # Files another writer committed meanwhile: leave them out and load the rest
            # (Spark cleans the batch's files once this returns, so none may be skipped).
            log.warning(
                "spark batch %d: %d file(s) were committed elsewhere; loading the others",
                batch_id,
                len(outcome.committed_files),
            )
            load_bound(batch_df, batch_id, reserved)
            return
        result = outcome.result
        assert result is not None
        log.info(
            "spark batch %d committed as batch %d: read %d, loaded %d, duplicates %d, "
            "quarantined %d",
            batch_id, result.batch_id, result.rows_read, result.rows_loaded,
            result.duplicates_in_batch + result.duplicates_in_store, result.rows_quarantined,
        )  # fmt: skip

    return load_batch


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _staged_batch(
    summary: pa.Table,
    *,
    source: str,
    key: str,
    prefix: str,
    started_at: datetime,
    parse_seconds: float,
    file_ledger: bool = True,
) -> ParsedBatch:
    """The driver's batch, from the tasks' summaries: its rows wait in staging.
    ``file_ledger`` False (Kafka): the per-chunk outcomes only count rows read; the
    position is the checkpoint's, guarded by the batch key."""
    frame = pl.from_arrow(summary)
    assert isinstance(frame, pl.DataFrame)
    files = frame.filter(pl.col("kind") == FILE)
    outcomes = [
        FileOutcome(
            row["source"],
            row["content_hash"],
            int(row["size_bytes"]),
            FileStatus(row["status"]),
            int(row["rows_read"]),
            row["input_format"],
            tuple(row["ignored_columns"] or ()),
            rows_ignored=int(row["rows_ignored"] or 0),
        )
        for row in files.iter_rows(named=True)
    ]
    parts = frame.filter(pl.col("kind") == PART)
    counts: Counter[str] = Counter()
    for names, numbers in zip(parts["rule_names"], parts["rule_counts"], strict=True):
        counts.update(dict(zip(names, numbers, strict=True)))
    staged = StagedRows(
        prefix,
        tuple(
            StagedPart(
                row["events_table"],
                row["quarantine_table"],
                int(row["staged_events"]),
                int(row["quarantine_rows"]),
                int(row["quarantined_records"]),
            )
            for row in parts.iter_rows(named=True)
        ),
    )
    batch = ParsedBatch(
        engine="spark",
        source=source,
        started_at=started_at,
        events=pl.DataFrame(schema=EVENT_SCHEMA),
        quarantine=empty_quarantine(),
        files=outcomes if file_ledger else [],
        rows_read=sum(o.rows_read for o in outcomes),
        rows_ignored=sum(o.rows_ignored for o in outcomes),
        duplicates_in_batch=0,
        quarantined_by_rule=counts,
        parse_seconds=parse_seconds,
        source_batch_key=key,
        staged=staged,
    )
    batch.check_accounting()
    return batch


def _stage_prefix(query_id: str) -> str:
    """Staging tables of a query's batches start with this (then ``<batch id>_``)."""
    return f"s{_digest(query_id)}_"


def _drop_stage(url: str, prefix: str) -> None:
    with connect(url) as conn:
        drop_stage(conn, prefix)


def run_spark(
    spark: SparkSession,
    job: SparkJob,
    url: str,
    settings: Settings,
    predicates: dict[str, str],
    *,
    until_idle: bool,
    should_stop: Any,
) -> tuple[StreamingQuery, Loader]:
    loader = Loader.from_settings(url, settings)
    query = build_query(
        spark, job, loader, predicates, until_idle=until_idle, trigger_ms=settings.trigger_ms
    )
    while query.isActive and not should_stop():
        query.awaitTermination(1)
    return query, loader
