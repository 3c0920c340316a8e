"""What the stages exchange, on the ground floor every stage may import: the items a
source hands out (``IncomingFile``), the micro-batch an engine builds (``ParsedBatch``),
and what the loader records of it (file outcomes, pieces, stream offsets, quarantine rows).
Sources, engines and the store depend on this module, never on each other's rooms."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Final, Literal

import polars as pl

from shopstream.validation.rules import FileRejection

EngineName = Literal["embedded", "spark", "replay"]


class FileStatus(StrEnum):
    """How a source file ended up, as recorded in the ``ingested_files`` ledger."""

    LOADED = "loaded"
    QUARANTINED = "quarantined"
    REJECTED = "rejected"
    EMPTY = "empty"


# Columns of the quarantine frame an engine produces (``rules`` is a list of rule names).
QUARANTINE_SCHEMA: Final[dict[str, pl.DataType]] = {
    "source": pl.String(),
    "line_no": pl.Int64(),
    "scope": pl.String(),
    "rules": pl.List(pl.String()),
    "raw": pl.String(),  # an excerpt of at most SHOPSTREAM_QUARANTINE_EXCERPT_BYTES
    "raw_bytes": pl.Binary(),
    "format": pl.String(),
    "header": pl.String(),
    "raw_size": pl.Int64(),  # the whole record's size and SHA-256, however long it was
    "raw_sha256": pl.String(),
    "fields": pl.List(pl.String()),  # the fields the broken rules found at fault
    # Input records the row stands for: 1, or every record of a file rejected whole.
    "records": pl.Int64(),
}


@dataclass(frozen=True, slots=True)
class FilePiece:
    """A stretch of whole records of a file too large to parse at once, loaded as a batch
    of its own. Each piece moves the file's stored position (``file_progress``) from
    ``start`` to ``end`` only if it is at ``start``; the ledger records the file when its
    last piece commits, so a restart resumes after the last committed piece."""

    index: int
    start: int  # decompressed byte offset of its first record
    end: int  # offset after its last record
    end_line: int  # file line number after its last record
    line_shift: int  # added to the piece's own line numbers to give the file's
    last: bool


@dataclass(frozen=True, slots=True)
class FileProgress:
    """Where a partly loaded file's stored position is (``file_progress``): a reader
    resumes there after a restart."""

    next_offset: int
    next_line: int
    pieces: int


@dataclass(frozen=True, slots=True)
class FileOutcome:
    """One source file's entry in the ledger (for a piece: its share of it)."""

    path: str
    content_hash: str
    size_bytes: int
    status: FileStatus
    rows_read: int
    input_format: str | None = None
    ignored_columns: tuple[str, ...] = ()  # source fields no field took (kept in properties)
    piece: FilePiece | None = None
    rows_ignored: int = 0  # records of a type its mapping ignores (within rows_read)


@dataclass(frozen=True, slots=True)
class SourceOffset:
    """A stream partition's part of a batch: it moves the stored offset from ``start``
    (``None``: nothing stored yet) to ``end``, the offset after its last message."""

    consumer_group: str
    topic: str
    partition: int
    start: int | None
    end: int
    high_watermark: int

    @property
    def lag(self) -> int:
        """Messages behind the end of the partition once this batch commits."""
        return max(0, self.high_watermark - self.end)


@dataclass(frozen=True, slots=True)
class FileOrigin:
    """Rows from a file: its path and line numbers, and a ledger entry of its own."""

    path: str
    content_hash: str


@dataclass(frozen=True, slots=True)
class MessageOrigin:
    """Rows from stream messages framed as lines (see ``sources.kafka_framing``): line
    ``first_line + n`` is the message at ``offsets[n]``; ``position`` is the range of the
    partition the batch moves its stored offset over."""

    topic: str
    partition: int
    first_line: int
    offsets: tuple[int, ...]
    position: SourceOffset


@dataclass(frozen=True, slots=True)
class ReplayOrigin:
    """Rows rebuilt from quarantine rows: ``lines`` maps each line to the source and line
    the row was first read from; a whole file replayed comes from ``source``."""

    lines: Mapping[int, tuple[str, int | None]]
    source: str


Origin = FileOrigin | MessageOrigin | ReplayOrigin


@dataclass(frozen=True, slots=True)
class IncomingFile:
    """A source file's bytes as read once (or a piece of them); the hash is of the whole
    file as stored. ``size`` is the whole file's size when ``data`` holds only part of it:
    its head (a file rejected without being read whole) or a piece."""

    path: str
    data: bytes
    content_hash: str
    changed_from: str | None = None  # hash of an earlier, different ingestion of this path
    size: int | None = None
    decoded: bool = False  # ``data`` is already decompressed
    piece: FilePiece | None = None
    # Rejected before parsing (by the source, which read it as a stream).
    rejected_as: tuple[FileRejection, str] | None = None
    # Where its rows came from, when not from the file at ``path`` itself.
    came_from: MessageOrigin | ReplayOrigin | None = None

    @property
    def origin(self) -> Origin:
        return self.came_from or FileOrigin(self.path, self.content_hash)

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def size_bytes(self) -> int:
        return len(self.data) if self.size is None else self.size


@dataclass(frozen=True, slots=True)
class StagedPart:
    """What one worker task staged: its tables (None: it had no such rows) and counts."""

    events_table: str | None
    quarantine_table: str | None
    events: int  # valid rows, duplicates within the batch included
    quarantine_rows: int
    quarantined_records: int  # input records those rows stand for


@dataclass(frozen=True, slots=True)
class StagedRows:
    """Rows an engine's workers wrote into staging tables themselves, so that none passes
    through the driver: the loader moves them into the store inside the batch's commit and
    drops the tables (all named ``prefix…``) with it."""

    prefix: str
    parts: tuple[StagedPart, ...]

    @property
    def events(self) -> int:
        return sum(p.events for p in self.parts)

    @property
    def quarantined_records(self) -> int:
        return sum(p.quarantined_records for p in self.parts)


@dataclass(frozen=True, slots=True)
class ParsedBatch:
    """A micro-batch ready to load: valid events (unique ids), quarantine rows, ledger rows.
    Frozen: a stage that knows more (a source's offsets, replay's origins) makes a new one.

    ``rows_read = len(events) + duplicates_in_batch + quarantined_rows + rows_ignored``
    holds by construction; the loader adds the duplicates it finds in the store. With
    ``staged`` rows (the Spark engine), ``events`` and ``quarantine`` are empty and the
    staged valid rows stand in for ``len(events) + duplicates_in_batch``: the loader tells
    the two apart when it moves them.
    """

    engine: EngineName
    source: str
    started_at: datetime
    events: pl.DataFrame
    quarantine: pl.DataFrame
    files: list[FileOutcome]
    rows_read: int
    duplicates_in_batch: int
    quarantined_by_rule: Counter[str] = field(default_factory=Counter)
    parse_seconds: float = 0.0
    source_batch_key: str | None = None
    replayed_quarantine_ids: list[int] = field(default_factory=list)
    # Stream sources: the partition ranges this batch consumed (files use ``files``).
    offsets: list[SourceOffset] = field(default_factory=list)
    # Records of a type the mapping says to ignore: counted, not loaded nor quarantined.
    rows_ignored: int = 0
    # Source fields no canonical field took, per source (kept in ``properties``).
    unmapped_fields: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    staged: StagedRows | None = None

    @property
    def quarantined_rows(self) -> int:
        """Input records quarantined: a file rejected whole counts all its records."""
        held = int(self.quarantine.get_column("records").sum()) if self.quarantine.height else 0
        return held + (self.staged.quarantined_records if self.staged else 0)

    def check_accounting(self) -> None:
        valid = self.events.height + self.duplicates_in_batch
        valid += self.staged.events if self.staged else 0
        accounted = valid + self.quarantined_rows + self.rows_ignored
        if accounted != self.rows_read:
            raise AssertionError(
                f"batch accounting broken: read {self.rows_read} != valid rows {valid} "
                f"+ quarantined {self.quarantined_rows} + ignored {self.rows_ignored}"
            )


def where_from(item: IncomingFile, line: int | None) -> tuple[str, int | None]:
    """The source and line a row of ``item`` came from (``line`` None: the item as a
    whole). Quarantine rows, dead letters and replays all name rows by this."""
    match item.origin:
        case FileOrigin(path=path):
            return path, line
        case MessageOrigin(topic=topic, partition=partition, first_line=first, offsets=offsets):
            at = offsets[line - first] if line is not None and line >= first else None
            return f"kafka://{topic}/{partition}", at
        case ReplayOrigin(lines=lines, source=source):
            if line is None:
                return source, None
            return lines.get(line, (source, line))


def empty_quarantine() -> pl.DataFrame:
    return pl.DataFrame(schema=QUARANTINE_SCHEMA)
