"""Build one micro-batch from source files: parse -> normalise -> validate -> dedupe."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import polars as pl

from shopstream.engines.base import (
    QUARANTINE_SCHEMA,
    FileOutcome,
    FileStatus,
    ParsedBatch,
    empty_quarantine,
)
from shopstream.engines.embedded.normalize import EVENT_SCHEMA, normalize
from shopstream.engines.embedded.reader import (
    FileRejectedError,
    FileRows,
    decode_container,
    read_rows,
)
from shopstream.engines.embedded.validate import split_valid
from shopstream.schema import FIELD_NAMES, InputFormat
from shopstream.validation.rules import FileRejection

_FILE_PREVIEW_CHARS: Final = 65_536
_FILE_BYTES_KEPT: Final = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class IncomingFile:
    """A source file's bytes as read once; the hash is of exactly these bytes."""

    path: str
    data: bytes
    content_hash: str
    changed_from: str | None = None  # hash of an earlier, different ingestion of this path

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


def build_batch(
    files: list[IncomingFile],
    *,
    source: str,
    predicates: dict[str, str],
    input_format: InputFormat | None = None,
) -> ParsedBatch:
    """Parse, validate and dedupe ``files`` into one batch; ``input_format``, when given,
    is the only format accepted (otherwise each file's is recognised)."""
    started_at = datetime.now(UTC)
    clock = time.perf_counter()
    outcomes: list[FileOutcome] = []
    parsed: list[tuple[IncomingFile, FileRows]] = []
    quarantine_parts: list[pl.DataFrame] = []
    counts: Counter[str] = Counter()
    rows_read = 0

    for incoming in files:
        result = parse_file(incoming, input_format)
        outcomes.append(result.outcome)
        rows_read += result.outcome.rows_read
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
        rows_read=rows_read,
        duplicates_in_batch=duplicates,
        quarantined_by_rule=counts,
        parse_seconds=time.perf_counter() - clock,
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


def parse_file(incoming: IncomingFile, input_format: InputFormat | None) -> ParsedFile:
    """The structural half of a batch, per file; every engine parses files with this."""
    try:
        rows = _read_incoming(incoming, input_format)
    except FileRejectedError as rejection:
        status = (
            FileStatus.REJECTED
            if rejection.reason is FileRejection.CHANGED_AFTER_INGESTION
            else FileStatus.QUARANTINED
        )
        return ParsedFile(
            FileOutcome(incoming.path, incoming.content_hash, len(incoming.data), status, 1),
            None,
            _file_quarantine(incoming, rejection),
            Counter({rejection.reason.value: 1}),
        )
    outcome = FileOutcome(
        incoming.path,
        incoming.content_hash,
        len(incoming.data),
        FileStatus.LOADED if rows.rows_read else FileStatus.EMPTY,
        rows.rows_read,
        rows.input_format.value,
        rows.ignored_columns,
    )
    quarantine = _structural_quarantine(incoming, rows) if rows.rejected else None
    return ParsedFile(outcome, rows, quarantine, Counter(r.rule.value for r in rows.rejected))


def _read_incoming(incoming: IncomingFile, input_format: InputFormat | None) -> FileRows:
    if incoming.changed_from is not None:
        raise FileRejectedError(
            FileRejection.CHANGED_AFTER_INGESTION,
            f"ingested before with hash {incoming.changed_from}",
        )
    return read_rows(decode_container(incoming.data, incoming.name), incoming.name, input_format)


def _file_quarantine(incoming: IncomingFile, rejection: FileRejectedError) -> pl.DataFrame:
    kept = incoming.data[:_FILE_BYTES_KEPT]
    preview = kept[: _FILE_PREVIEW_CHARS * 4].decode("utf-8", "backslashreplace")
    preview = preview.replace("\x00", "\\x00")[:_FILE_PREVIEW_CHARS]
    return pl.DataFrame(
        {
            "source": [incoming.path],
            "line_no": [None],
            "scope": ["file"],
            "rules": [[rejection.reason.value]],
            "raw": [f"{rejection.detail}\n{preview}"],
            "raw_bytes": [kept],
            "format": [None],
            "header": [None],
        },
        schema=QUARANTINE_SCHEMA,
    )


def _structural_quarantine(incoming: IncomingFile, rows: FileRows) -> pl.DataFrame:
    raws = [rows.raw_line(r.line_no) for r in rows.rejected]
    return pl.DataFrame(
        {
            "source": incoming.path,
            "line_no": [r.line_no for r in rows.rejected],
            "scope": "row",
            "rules": [[r.rule.value] for r in rows.rejected],
            "raw": [text for text, _ in raws],
            "raw_bytes": [exact for _, exact in raws],
            "format": rows.input_format.value,
            "header": rows.header,
        },
        schema=QUARANTINE_SCHEMA,
    )


def _rule_quarantine(
    invalid: pl.DataFrame, parsed: list[tuple[IncomingFile, FileRows]]
) -> pl.DataFrame:
    parts = []
    for (file_index,), group in invalid.select("_file", "_line", "rules").group_by(
        "_file", maintain_order=True
    ):
        incoming, rows = parsed[int(str(file_index))]
        raws = [rows.raw_line(line) for line in group["_line"].to_list()]
        parts.append(
            pl.DataFrame(
                {
                    "source": incoming.path,
                    "line_no": group["_line"],
                    "scope": "row",
                    "rules": group["rules"],
                    "raw": [text for text, _ in raws],
                    "raw_bytes": [exact for _, exact in raws],
                    "format": rows.input_format.value,
                    "header": rows.header,
                },
                schema=QUARANTINE_SCHEMA,
            )
        )
    return pl.concat(parts, how="vertical")
