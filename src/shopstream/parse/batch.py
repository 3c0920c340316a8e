"""Build one micro-batch from source files: parse -> normalise -> validate -> dedupe."""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime

import polars as pl

from shopstream.contract import (
    QUARANTINE_SCHEMA,
    FileOrigin,
    FileOutcome,
    FileStatus,
    IncomingFile,
    MessageOrigin,
    ParsedBatch,
    ReplayOrigin,
    SourceOffset,
    empty_quarantine,
    where_from,
)
from shopstream.parse.mapping import NO_CHOICE, MappingChoice
from shopstream.parse.normalize import EVENT_SCHEMA, normalize
from shopstream.parse.reader import (
    FileRejectedError,
    FileRows,
    RawRecord,
    decode_container,
    raw_record,
    read_rows,
)
from shopstream.parse.validate import split_valid
from shopstream.schema import FIELD_NAMES
from shopstream.validation.limits import DEFAULT_LIMITS, ReadLimits
from shopstream.validation.rules import FileRejection


def build_batch(
    files: list[IncomingFile],
    *,
    source: str,
    predicates: dict[str, str],
    choice: MappingChoice = NO_CHOICE,
    limits: ReadLimits = DEFAULT_LIMITS,
) -> ParsedBatch:
    """Parse, map, validate and dedupe ``files`` into one batch; ``choice`` says which
    mapping reads them (otherwise each file's format is recognised). Files read from disk
    go to the ledger; stream messages move their partitions' offsets instead."""
    started_at = datetime.now(UTC)
    clock = time.perf_counter()
    outcomes: list[FileOutcome] = []
    parsed: list[tuple[IncomingFile, FileRows]] = []
    quarantine_parts: list[pl.DataFrame] = []
    counts: Counter[str] = Counter()
    rows_read = rows_ignored = 0
    unmapped: dict[str, tuple[str, ...]] = {}

    positions: dict[tuple[str, int], SourceOffset] = {}
    for incoming in files:
        result = parse_file(incoming, choice, limits)
        match incoming.origin:
            case FileOrigin():
                outcomes.append(result.outcome)
            case MessageOrigin(topic=topic, partition=partition, position=position):
                positions[(topic, partition)] = position
                if result.outcome.ignored_columns:
                    unmapped[f"kafka://{topic}/{partition}"] = result.outcome.ignored_columns
            case ReplayOrigin():
                pass  # rebuilt from quarantine rows: in no ledger
        rows_read += result.outcome.rows_read
        rows_ignored += result.outcome.rows_ignored
        counts.update(result.counts)
        if result.quarantine is not None:
            quarantine_parts.append(result.quarantine)
        if result.rows is not None:
            parsed.append((incoming, result.rows))

    frames = [
        rows.frame.with_columns(_file=pl.lit(index, dtype=pl.Int32))
        for index, (_, rows) in enumerate(parsed)
        if rows.frame.height
    ]
    duplicates = 0
    events = pl.DataFrame(schema=EVENT_SCHEMA)
    if frames:
        typed = normalize(pl.concat(frames, how="diagonal_relaxed"))
        valid, invalid, rule_counts = split_valid(typed, predicates)
        counts.update(rule_counts)
        if invalid.height:
            quarantine_parts.append(_rule_quarantine(invalid, parsed))
        first = valid.select(pl.col("event_id").is_first_distinct()).to_series()
        duplicates = valid.height - int(first.sum())
        events = valid.filter(first).select(
            pl.col(name).cast(EVENT_SCHEMA[name]) for name in FIELD_NAMES
        )

    quarantine = (
        pl.concat(quarantine_parts, how="vertical") if quarantine_parts else empty_quarantine()
    )
    batch = ParsedBatch(
        engine="embedded",
        source=source,
        started_at=started_at,
        events=events,
        quarantine=quarantine,
        files=outcomes,
        offsets=list(positions.values()),
        rows_read=rows_read,
        duplicates_in_batch=duplicates,
        quarantined_by_rule=counts,
        parse_seconds=time.perf_counter() - clock,
        rows_ignored=rows_ignored,
        unmapped_fields=unmapped,
    )
    batch.check_accounting()
    return batch


@dataclass(slots=True)
class ParsedFile:
    """One file split into rows: its ledger outcome, its rows (None when the whole file was
    rejected) and the quarantine rows its structure produced (bad lines, or the file)."""

    outcome: FileOutcome
    rows: FileRows | None
    quarantine: pl.DataFrame | None
    counts: Counter[str]


def parse_file(
    incoming: IncomingFile, choice: MappingChoice = NO_CHOICE, limits: ReadLimits = DEFAULT_LIMITS
) -> ParsedFile:
    """The structural half of a batch, per file, mapped; every engine parses with this."""
    try:
        rows = _read_incoming(incoming, choice, limits)
    except FileRejectedError as rejection:
        status = (
            FileStatus.REJECTED
            if rejection.reason is FileRejection.CHANGED_AFTER_INGESTION
            else FileStatus.QUARANTINED
        )
        return ParsedFile(
            FileOutcome(
                incoming.path,
                incoming.content_hash,
                incoming.size_bytes,
                status,
                rejection.records,
                piece=incoming.piece,
            ),
            None,
            _file_quarantine(incoming, rejection, limits),
            Counter({rejection.reason.value: 1}),
        )
    outcome = FileOutcome(
        incoming.path,
        incoming.content_hash,
        incoming.size_bytes,
        FileStatus.LOADED if rows.rows_read else FileStatus.EMPTY,
        rows.rows_read,
        rows.input_format,
        rows.ignored_columns,
        incoming.piece,
        rows.ignored_rows,
    )
    quarantine = _structural_quarantine(incoming, rows) if rows.rejected else None
    return ParsedFile(outcome, rows, quarantine, Counter(r.rule.value for r in rows.rejected))


def _read_incoming(incoming: IncomingFile, choice: MappingChoice, limits: ReadLimits) -> FileRows:
    if incoming.changed_from is not None:
        raise FileRejectedError(
            FileRejection.CHANGED_AFTER_INGESTION,
            f"ingested before with hash {incoming.changed_from}",
        )
    if incoming.rejected_as is not None:
        raise FileRejectedError(*incoming.rejected_as)
    if incoming.decoded:
        return read_rows(incoming.data, incoming.name, choice, limits)
    data = decode_container(incoming.data, incoming.name, limits)
    return read_rows(data, incoming.name, choice, limits)


def _file_quarantine(
    incoming: IncomingFile, rejection: FileRejectedError, limits: ReadLimits
) -> pl.DataFrame:
    """The file as one quarantine row: the reason first, then an excerpt of the file."""
    head = raw_record(incoming.data[: limits.excerpt_bytes], limits.excerpt_bytes)
    source, _ = where_from(incoming, None)
    return pl.DataFrame(
        {
            "source": [source],
            "line_no": [None],
            "scope": ["file"],
            "rules": [[rejection.reason.value]],
            "raw": [f"{rejection.detail}\n{head.text}"],
            "raw_bytes": [incoming.data[: limits.excerpt_bytes]],
            "format": [None],
            "header": [None],
            "raw_size": [incoming.size_bytes],
            "raw_sha256": [incoming.content_hash or hashlib.sha256(incoming.data).hexdigest()],
            "fields": [None],
            "records": [rejection.records],
        },
        schema=QUARANTINE_SCHEMA,
    )


def _quarantine_rows(
    incoming: IncomingFile,
    rows: FileRows,
    line_numbers: list[int],
    rules: list[list[str]] | pl.Series,
    fields: list[list[str] | None] | pl.Series | None = None,
) -> pl.DataFrame:
    raws: list[RawRecord] = [rows.raw_line(line) for line in line_numbers]
    shift = incoming.piece.line_shift if incoming.piece is not None else 0
    if isinstance(incoming.origin, FileOrigin):
        sources: pl.Series | str = incoming.path
        lines = pl.Series(line_numbers, dtype=pl.Int64) + shift
    else:
        located = [where_from(incoming, line + shift) for line in line_numbers]
        sources = pl.Series([source for source, _ in located], dtype=pl.String)
        lines = pl.Series([line for _, line in located], dtype=pl.Int64)
    return pl.DataFrame(
        {
            "source": sources,
            "line_no": lines,
            "scope": "row",
            "rules": rules,
            "raw": [r.text for r in raws],
            "raw_bytes": [r.exact for r in raws],
            "format": rows.input_format,
            "header": rows.header,
            "raw_size": [r.size for r in raws],
            "raw_sha256": [r.sha256 for r in raws],
            "fields": fields if fields is not None else [None] * len(raws),
            "records": 1,
        },
        schema=QUARANTINE_SCHEMA,
    )


def _structural_quarantine(incoming: IncomingFile, rows: FileRows) -> pl.DataFrame:
    return _quarantine_rows(
        incoming,
        rows,
        [r.line_no for r in rows.rejected],
        [[r.rule.value] for r in rows.rejected],
    )


def _rule_quarantine(
    invalid: pl.DataFrame, parsed: list[tuple[IncomingFile, FileRows]]
) -> pl.DataFrame:
    parts = []
    for (file_index,), group in invalid.select("_file", "_line", "rules", "fields").group_by(
        "_file", maintain_order=True
    ):
        incoming, rows = parsed[int(str(file_index))]
        parts.append(
            _quarantine_rows(
                incoming, rows, group["_line"].to_list(), group["rules"], group["fields"]
            )
        )
    return pl.concat(parts, how="vertical")
