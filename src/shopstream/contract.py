"""What the stages exchange, on the ground floor every stage may import: the items a
source hands out (``IncomingFile``), the micro-batch an engine builds (``ParsedBatch``),
and what the loader records of it (file outcomes, pieces, stream offsets, quarantine rows).
Sources, engines and the store depend on this module, never on each other's rooms."""

from __future__ import annotations

from collections import Counter
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
    ignored_columns: tuple[str, ...] = ()
    piece: FilePiece | None = None


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

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def size_bytes(self) -> int:
        return len(self.data) if self.size is None else self.size


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
class ParsedBatch:
    """A micro-batch ready to load: valid events (unique ids), quarantine rows, ledger rows.
    Frozen: a stage that knows more (a source's offsets, replay's origins) makes a new one.

    ``rows_read = len(events) + duplicates_in_batch + quarantined_rows`` holds by
    construction; the loader adds the duplicates it finds in the store.
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
    # Reserved by the engine before parsing, so its log lines, the loader's and the batch
    # record share one id; None: the loader reserves it in its transaction.
    batch_id: int | None = None
    replayed_quarantine_ids: list[int] = field(default_factory=list)
    # Stream sources: the partition ranges this batch consumed (files use ``files``).
    offsets: list[SourceOffset] = field(default_factory=list)

    @property
    def quarantined_rows(self) -> int:
        return self.quarantine.height

    def check_accounting(self) -> None:
        accounted = self.events.height + self.duplicates_in_batch + self.quarantined_rows
        if accounted != self.rows_read:
            raise AssertionError(
                f"batch accounting broken: read {self.rows_read} != events "
                f"{self.events.height} + duplicates {self.duplicates_in_batch} "
                f"+ quarantined {self.quarantined_rows}"
            )


def empty_quarantine() -> pl.DataFrame:
    return pl.DataFrame(schema=QUARANTINE_SCHEMA)
