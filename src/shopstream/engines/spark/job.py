"""The Spark job: a file stream of whole files, parsed on executors, validated by Spark from
the shared rule definitions, and handed per micro-batch to the exactly-once loader.

Exactly once: each micro-batch commits in one PostgreSQL transaction whose batch record is
keyed ``spark:<query id>:<batch id>`` (unique), so the replay of a batch that Spark's
checkpoint had not yet marked done is a no-op; the file ledger also keeps a file from being
loaded twice by a different query (a new checkpoint). Errors inside ``foreachBatch`` are
never swallowed: Spark stops the query and runs the batch again on restart.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
import pyarrow as pa

from shopstream.engines.base import QUARANTINE_SCHEMA, FileOutcome, FileStatus, ParsedBatch
from shopstream.engines.embedded.normalize import EVENT_SCHEMA
from shopstream.engines.spark.parse import FILE, QUARANTINE, ROW, parse_files, spark_ddl
from shopstream.schema import DATA_SUFFIXES, FIELD_NAMES, InputFormat
from shopstream.settings import Settings
from shopstream.store.connection import connect
from shopstream.store.loader import AlreadyCommitted, Loader
from shopstream.validation.rules import ROW_RULES

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.streaming.query import StreamingQuery

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SparkJob:
    source: Path
    checkpoint: Path
    input_format: InputFormat | None = None
    max_files_per_trigger: int | None = None
    archive: Path | None = None
    delete: bool = False


def build_query(
    spark: SparkSession,
    job: SparkJob,
    loader: Loader,
    predicates: dict[str, str],
    *,
    until_idle: bool,
    trigger_ms: int,
) -> StreamingQuery:
    from pyspark.sql import functions as sf

    reader = (
        spark.readStream.format("binaryFile")
        .schema("path STRING, modificationTime TIMESTAMP, length BIGINT, content BINARY")
        .option("pathGlobFilter", "*{" + ",".join(DATA_SUFFIXES) + "}")
        .option("recursiveFileLookup", "false")
    )
    if job.max_files_per_trigger:
        reader = reader.option("maxFilesPerTrigger", str(job.max_files_per_trigger))
    if job.archive is not None:
        reader = reader.option("cleanSource", "archive").option(
            "sourceArchiveDir", str(job.archive)
        )
    elif job.delete:
        reader = reader.option("cleanSource", "delete")
    files = reader.load(str(job.source))
    input_format = job.input_format

    def parse(batches: Any) -> Any:
        return parse_files(batches, input_format)

    def load_batch(batch_df: DataFrame, batch_id: int) -> None:
        started = time.perf_counter()
        listed = [row.path for row in batch_df.select("path").collect()]
        known = _committed_files(loader.url, listed)
        fresh = batch_df.filter(~sf.col("path").isin(list(known))) if known else batch_df
        parsed = fresh.select("path", "content").mapInArrow(parse, spark_ddl())
        table = _validated(parsed, predicates).toArrow()
        batch = _parsed_batch(
            table,
            source=str(job.source),
            key=f"spark:{query_id()}:{batch_id}",
            parse_seconds=time.perf_counter() - started,
        )
        try:
            result = loader.load(batch)
        except AlreadyCommitted:
            log.info("spark batch %d was committed before; nothing to do", batch_id)
            return
        log.info(
            "spark batch %d committed as batch %d: read %d, loaded %d, duplicates %d, "
            "quarantined %d",
            batch_id, result.batch_id, result.rows_read, result.rows_loaded,
            result.duplicates_in_batch + result.duplicates_in_store, result.rows_quarantined,
        )  # fmt: skip

    holder: dict[str, StreamingQuery] = {}

    def query_id() -> str:
        return str(holder["query"].id)

    writer = (
        files.writeStream.foreachBatch(load_batch)
        .option("checkpointLocation", str(job.checkpoint))
        .queryName(f"shopstream_{_digest(str(job.source))}")
    )
    writer = (
        writer.trigger(availableNow=True)
        if until_idle
        else writer.trigger(processingTime=f"{trigger_ms} milliseconds")
    )
    holder["query"] = writer.start()
    return holder["query"]


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _committed_files(url: str, paths: list[str]) -> set[str]:
    """Spark paths of files the ledger already holds (a new checkpoint lists them again)."""
    from shopstream.engines.spark.parse import local_path

    if not paths:
        return set()
    local = {local_path(p): p for p in paths}
    with connect(url) as conn:
        rows = conn.execute(
            "SELECT path FROM ingested_files WHERE path = ANY(%s)", (list(local),)
        ).fetchall()
    return {local[str(row[0])] for row in rows}


def _validated(parsed: DataFrame, predicates: dict[str, str]) -> DataFrame:
    """Row rules evaluated by Spark: ``rules`` lists every rule a row breaks (NULL counts
    as broken, as on every engine); only rows that broke one keep their raw text."""
    from pyspark.sql import functions as sf

    blocking = [r.name for r in ROW_RULES if r.severity == "quarantine" and r.name in predicates]
    broken = sf.filter(
        sf.array(
            *(
                sf.when(~sf.coalesce(sf.expr(predicates[name]), sf.lit(False)), sf.lit(name))
                for name in blocking
            )
        ),
        lambda rule: rule.isNotNull(),
    )
    is_row = sf.col("kind") == ROW
    checked = parsed.withColumn("rules", sf.when(is_row, broken).otherwise(sf.col("rules")))
    keep = ~is_row | (sf.size("rules") > 0)  # the driver needs these for quarantine only
    return checked.select(
        *(sf.when(keep, sf.col(c)).alias(c) if c in _QUARANTINE_ONLY else sf.col(c)
          for c in checked.columns)
    )  # fmt: skip


_QUARANTINE_ONLY = ("raw", "raw_bytes", "header", "format")


def _parsed_batch(table: pa.Table, *, source: str, key: str, parse_seconds: float) -> ParsedBatch:
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    kind = pl.col("kind")
    files = frame.filter(kind == FILE)
    outcomes = [
        FileOutcome(
            row["source"],
            row["content_hash"],
            int(row["size_bytes"]),
            FileStatus(row["status"]),
            int(row["rows_read"]),
            row["input_format"],
            tuple(row["ignored_columns"] or ()),
        )
        for row in files.iter_rows(named=True)
    ]
    rows = frame.filter(kind == ROW).sort("source", "line_no")
    failing = rows.filter(pl.col("rules").list.len() > 0)
    passing = rows.filter(pl.col("rules").list.len() == 0)
    quarantine = pl.concat(
        [
            part.select(
                "source",
                "line_no",
                pl.lit("row").alias("scope"),
                "rules",
                "raw",
                "raw_bytes",
                "format",
                "header",
            ).cast(pl.Schema(QUARANTINE_SCHEMA))
            for part in (frame.filter(kind == QUARANTINE), failing)
        ]
    )
    quarantine = quarantine.with_columns(
        pl.when(pl.col("line_no").is_null()).then(pl.lit("file")).otherwise("scope").alias("scope")
    )
    first = passing.select(pl.col("event_id").is_first_distinct()).to_series()
    events = passing.filter(first).select(
        pl.col(name).cast(EVENT_SCHEMA[name]) for name in FIELD_NAMES
    )
    counts: Counter[str] = Counter()
    for rules in quarantine["rules"].to_list():
        counts.update(rules)
    batch = ParsedBatch(
        engine="spark",
        source=source,
        started_at=datetime.now(UTC),
        events=events,
        quarantine=quarantine,
        files=outcomes,
        rows_read=sum(o.rows_read for o in outcomes),
        duplicates_in_batch=passing.height - events.height,
        quarantined_by_rule=counts,
        parse_seconds=parse_seconds,
        source_batch_key=key,
    )
    batch.check_accounting()
    return batch


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
