"""Split a file's bytes into rows of text fields, keeping every line accountable.

Structural checks (line breaks, field counts, bad bytes) run as numpy passes over the raw
buffer; Polars then parses the well-formed lines in Rust. Raw text is sliced back out of the
buffer only for the lines that end up quarantined, so a clean file costs no per-row Python.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Final

import numpy as np
import numpy.typing as npt
import polars as pl

from shopstream.parse.mapping import (
    BUILTIN,
    NO_CHOICE,
    Mapping,
    MappingChoice,
    apply_mapping,
    recognise_header,
    recognise_keys,
    unknown_columns_hint,
)
from shopstream.schema import SOURCE_FIELDS, InputFormat
from shopstream.validation.limits import DEFAULT_LIMITS, ReadLimits
from shopstream.validation.rules import FileRejection, StructuralRule

_BOM: Final = b"\xef\xbb\xbf"
GZIP_MAGIC: Final = b"\x1f\x8b"
_INFLATE_IN: Final = 1 << 20
_INFLATE_OUT: Final = 1 << 20
# Nesting the JSON parsers (Polars', Python's) take; deeper objects are json_too_deep.
_MAX_JSON_DEPTH: Final = 1000
_SCREEN_DEPTH: Final = 128  # lines this long may nest deeper than json_path_match goes
_OPENERS: Final = np.array([ord("{"), ord("[")], dtype=np.uint8)
_CLOSERS: Final = np.array([ord("}"), ord("]")], dtype=np.uint8)
_NEWLINE, _CR, _COMMA, _QUOTE, _NUL = 10, 13, 44, 34, 0
_STRING_SCHEMA: Final = {name: pl.String for name in SOURCE_FIELDS}
_CSV_FAMILY: Final = frozenset((InputFormat.SEED.value, InputFormat.CANONICAL.value))

Lines = npt.NDArray[np.int64]


class FileRejectedError(Exception):
    """The file cannot be split into rows; it is quarantined as a whole. ``records`` is how
    many input records that is (1 for a file that could not be read as lines of text)."""

    def __init__(self, reason: FileRejection, detail: str, records: int = 1) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail
        self.records = records


# Rejections of files readable as lines: they count each record, not the file as one.
_COUNTED_REJECTIONS: Final = frozenset(
    {
        FileRejection.UNKNOWN_HEADER,
        FileRejection.FORMAT_MISMATCH,
        FileRejection.HEADER_TOO_LONG,
        FileRejection.MOSTLY_BROKEN,
    }
)


@dataclass(slots=True)
class RejectedLine:
    line_no: int
    rule: StructuralRule


@dataclass(slots=True)
class FileRows:
    """A file as rows, mapped: canonical text columns, ``properties``, ``_line`` (1-based)
    and ``_element`` (an exploded record's index). ``input_format`` names the mapping;
    ``ignored_columns`` are the source fields the mapping left to ``properties``;
    ``ignored_rows`` the records of a type the mapping ignores."""

    input_format: str
    header: str | None
    frame: pl.DataFrame
    rejected: list[RejectedLine]
    ignored_columns: tuple[str, ...]
    data: bytes = field(repr=False)
    offsets: Lines = field(repr=False)
    limits: ReadLimits = field(default=DEFAULT_LIMITS, repr=False)
    ignored_rows: int = 0

    @property
    def rows_read(self) -> int:
        return self.frame.height + len(self.rejected) + self.ignored_rows

    def raw_line(self, line_no: int) -> RawRecord:
        """The line as received (an excerpt when it is long), with its size and hash."""
        start, end = int(self.offsets[line_no - 1]), int(self.offsets[line_no])
        view = memoryview(self.data)[start:end]
        size = len(view)
        while size and view[size - 1] in (_NEWLINE, _CR):
            size -= 1
        return raw_record(view[:size], self.limits.excerpt_bytes)


@dataclass(frozen=True, slots=True)
class RawRecord:
    """A quarantined record's raw content: ``text`` to show (an excerpt of at most the
    configured bytes), ``exact`` bytes of that excerpt when text cannot hold them (bad
    UTF-8, NUL), the whole record's size, and its SHA-256 when only an excerpt is kept (a
    whole record's is computed from what is stored, when asked for)."""

    text: str
    exact: bytes | None
    size: int
    sha256: str | None  # only for an excerpt: a whole record's hash is taken from it later


def raw_record(raw: bytes | memoryview, excerpt_bytes: int) -> RawRecord:
    size = len(raw)
    digest = hashlib.sha256(raw).hexdigest() if size > excerpt_bytes else None
    kept = bytes(raw[:excerpt_bytes])
    try:
        text = kept.decode("utf-8")
    except UnicodeDecodeError as error:
        if size > excerpt_bytes and error.start >= len(kept) - 3:
            text = kept[: error.start].decode("utf-8")  # an excerpt cut inside a character
        else:
            shown = kept.decode("utf-8", "backslashreplace")
            return RawRecord(shown.replace("\x00", "\\x00"), kept, size, digest)
    if "\x00" in text:
        return RawRecord(text.replace("\x00", "\\x00"), kept, size, digest)
    return RawRecord(text, None, size, digest)


def decode_container(data: bytes, name: str, limits: ReadLimits = DEFAULT_LIMITS) -> bytes:
    """Undo gzip compression (by name or magic number); leave plain files as they are.

    Decompression goes in bounded steps and stops as soon as the output passes
    ``max_file_bytes`` or expands beyond ``max_compression_ratio``, so a bomb costs
    milliseconds and a few MiB, not the size it would expand to.
    """
    if not (name.endswith(".gz") or data[:2] == GZIP_MAGIC):
        if len(data) > limits.max_file_bytes:
            raise FileRejectedError(
                FileRejection.TOO_LARGE,
                f"{len(data):,} bytes; the limit is {limits.max_file_bytes:,}",
            )
        return data
    return b"".join(inflate(io.BytesIO(data), limits))


def inflate(handle: BinaryIO, limits: ReadLimits) -> Iterator[bytes]:
    """Every gzip member read from ``handle``, inflated in bounded steps and checked
    against the limits as it grows (NUL padding after a member is allowed)."""
    inflater = zlib.decompressobj(wbits=31)
    produced = consumed = 0
    member_started = False
    try:
        while compressed := handle.read(_INFLATE_IN):
            consumed += len(compressed)
            while compressed:
                if not member_started:
                    compressed = compressed.lstrip(b"\x00")
                    if not compressed:
                        break
                member_started = True
                out = inflater.decompress(compressed, _INFLATE_OUT)
                compressed = inflater.unconsumed_tail
                if inflater.eof:
                    compressed = inflater.unused_data
                    inflater = zlib.decompressobj(wbits=31)
                    member_started = False
                produced += len(out)
                _check_inflated(produced, consumed, limits)
                if out:
                    yield out
    except zlib.error as error:
        raise FileRejectedError(FileRejection.UNREADABLE, f"bad gzip data: {error}") from error
    if member_started:
        raise FileRejectedError(
            FileRejection.UNREADABLE,
            "bad gzip data: the file ended before the end-of-stream marker",
        )


def _check_inflated(produced: int, consumed: int, limits: ReadLimits) -> None:
    if produced > limits.max_file_bytes:
        raise FileRejectedError(
            FileRejection.TOO_LARGE,
            f"decompresses to more than {limits.max_file_bytes:,} bytes",
        )
    ratio = produced / max(consumed, 1)
    if produced > limits.ratio_floor_bytes and ratio > limits.max_compression_ratio:
        raise FileRejectedError(
            FileRejection.COMPRESSION_RATIO,
            f"{consumed:,} compressed bytes expanded to {produced:,}"
            f" (more than {limits.max_compression_ratio:g} times)",
        )


def detect_format(name: str) -> InputFormat | None:
    """JSON Lines by extension; CSV files are told apart (seed vs canonical) by header."""
    stem = name.removesuffix(".gz")
    if stem.endswith((".jsonl", ".ndjson")):
        return InputFormat.JSONL
    if stem.endswith(".csv"):
        return InputFormat.CANONICAL
    return None


def read_rows(
    data: bytes,
    name: str,
    choice: MappingChoice = NO_CHOICE,
    limits: ReadLimits = DEFAULT_LIMITS,
) -> FileRows:
    """Parse one file (already decompressed) into mapped rows. A given mapping reads every
    file; with ``choice.strict`` (``--format``) a file recognised as another built-in
    format is rejected (the seed layout counts as canonical CSV)."""
    if data.startswith(_BOM):
        data = data[len(_BOM) :]
    offsets = _line_offsets(data)
    given = choice.given
    jsonl = (
        detect_format(name) is InputFormat.JSONL
        if given is None or not choice.strict
        else given.name in (InputFormat.JSONL, InputFormat.SEED_JSON)
    )
    try:
        if jsonl:
            rows = _read_jsonl(data, offsets, limits, choice)
        else:
            rows = _read_csv(data, offsets, limits, choice)
        if limits.mostly_broken(len(rows.rejected), rows.rows_read):
            raise _mostly_broken(rows, limits)
    except FileRejectedError as rejection:
        if rejection.reason not in _COUNTED_REJECTIONS:
            raise
        records = _record_count(data, offsets, header=not jsonl)
        raise FileRejectedError(rejection.reason, rejection.detail, records) from None
    return rows


def _record_count(data: bytes, offsets: Lines, *, header: bool) -> int:
    """Non-blank lines, less a CSV header: the records a rejected file held (at least 1)."""
    lines = int((_content_lengths(np.frombuffer(data, dtype=np.uint8), offsets) > 0).sum())
    return max(1, lines - 1 if header else lines)


def _check_strict(choice: MappingChoice, recognised: Mapping) -> None:
    given = choice.given
    if given is None or not choice.strict or given.name == recognised.name:
        return
    if {given.name, recognised.name} <= _CSV_FAMILY:
        return
    found = InputFormat.CANONICAL if recognised.name == InputFormat.SEED else recognised.name
    raise FileRejectedError(
        FileRejection.FORMAT_MISMATCH, f"--format {given.name} given, the file is {found}"
    )


def _map(
    frame: pl.DataFrame, mapping: Mapping, choice: MappingChoice
) -> tuple[pl.DataFrame, int, tuple[str, ...]]:
    mapped = apply_mapping(frame, mapping, choice)
    return mapped.frame, mapped.ignored, mapped.unmapped


def _mostly_broken(rows: FileRows, limits: ReadLimits) -> FileRejectedError:
    """A rejection carrying a sample of the bad records, to tell what the file is."""
    sample = [(r.line_no, r.rule) for r in rows.rejected[: limits.sample_records]]
    return _rejection_with_sample(
        rows.data, rows.offsets, sample, len(rows.rejected), rows.rows_read
    )


def _reject_if_mostly_broken(
    data: bytes,
    offsets: Lines,
    flagged: list[tuple[npt.NDArray[np.bool_], StructuralRule]],
    read: int,
    limits: ReadLimits,
) -> None:
    """Reject a mostly broken file from its masks, before a Python object is built per
    bad record (a file of millions of junk lines must cost Arrow, not Python, memory)."""
    bad = sum(int(mask.sum()) for mask, _ in flagged)
    if not limits.mostly_broken(bad, read):
        return
    sample = sorted(
        (int(index) + 1, rule)
        for mask, rule in flagged
        for index in np.flatnonzero(mask)[: limits.sample_records]
    )[: limits.sample_records]
    raise _rejection_with_sample(data, offsets, sample, bad, read)


def _rejection_with_sample(
    data: bytes, offsets: Lines, sample: list[tuple[int, StructuralRule]], bad: int, read: int
) -> FileRejectedError:
    lines = []
    for line_no, rule in sample:
        raw = data[
            int(offsets[line_no - 1]) : min(int(offsets[line_no]), int(offsets[line_no - 1]) + 200)
        ]
        text = raw.rstrip(b"\r\n").decode("utf-8", "backslashreplace").replace("\x00", "\\x00")
        lines.append(f"line {line_no} ({rule.value}): {text}")
    return FileRejectedError(
        FileRejection.MOSTLY_BROKEN,
        f"{bad:,} of {read:,} records are broken; the first ones:\n" + "\n".join(lines),
    )


# -- shared line machinery -----------------------------------------------------------------


def _line_offsets(data: bytes) -> Lines:
    """Start offset of every line plus the end of the data; a line keeps its newline."""
    buf = np.frombuffer(data, dtype=np.uint8)
    breaks = np.flatnonzero(buf == _NEWLINE).astype(np.int64) + 1
    offsets = np.concatenate((np.zeros(1, dtype=np.int64), breaks))
    if offsets[-1] != len(data):
        offsets = np.append(offsets, np.int64(len(data)))
    return offsets


def _positions(data: bytes, buf: npt.NDArray[np.uint8], byte: int) -> Lines:
    """Where ``byte`` occurs; a byte the data lacks costs a memchr, not a pass of numpy."""
    if bytes((byte,)) not in data:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(buf == byte)


def _per_line_count(positions: Lines, offsets: Lines) -> Lines:
    """How many of the (sorted) byte ``positions`` fall on each line."""
    if len(offsets) < 2:
        return np.zeros(0, dtype=np.int64)
    counts: Lines = np.diff(np.searchsorted(positions, offsets))
    return counts


def _field_counts(
    data: bytes, buf: npt.NDArray[np.uint8], offsets: Lines, quotes: Lines, quotes_per_line: Lines
) -> Lines:
    """Fields per line: one more than its commas outside quotes. Each line's quotes pair up
    in order (``""`` escapes make an empty pair); the commas between a pair are inside a
    field, as are those after a line's last, unpaired quote. ``quotes``: every quote's
    position, ``quotes_per_line`` their count per line."""
    commas = _positions(data, buf, _COMMA)
    lines = len(offsets) - 1
    line_of = np.repeat(np.arange(lines), quotes_per_line)
    first_quote = np.cumsum(quotes_per_line) - quotes_per_line
    opening = ((np.arange(len(quotes)) - first_quote[line_of]) % 2) == 0
    opens = np.flatnonzero(opening)
    paired = (opens + 1 < len(quotes)) & (
        line_of[np.minimum(opens + 1, len(quotes) - 1)] == line_of[opens]
    )
    closes = np.where(
        paired, quotes[np.minimum(opens + 1, len(quotes) - 1)], offsets[1:][line_of[opens]]
    )
    inside = np.searchsorted(commas, closes) - np.searchsorted(commas, quotes[opens])
    quoted = np.bincount(line_of[opens], weights=inside, minlength=lines).astype(np.int64)
    return _per_line_count(commas, offsets) - quoted + 1


def _content_lengths(buf: npt.NDArray[np.uint8], offsets: Lines) -> Lines:
    """Length of each line without its trailing ``\\n`` / ``\\r\\n``."""
    lengths = np.diff(offsets)
    if len(lengths) == 0:
        return lengths
    ends = offsets[1:] - 1
    has_nl = buf[ends] == _NEWLINE
    lengths = lengths - has_nl.astype(np.int64)
    before = np.maximum(offsets[1:] - 1 - has_nl, 0)
    has_cr = (lengths > 0) & (buf[before] == _CR)
    content: Lines = lengths - has_cr.astype(np.int64)
    return content


def _bad_encoding(data: bytes, buf: npt.NDArray[np.uint8], offsets: Lines) -> npt.NDArray[np.bool_]:
    """Lines that are not valid UTF-8 or hold NUL bytes (PostgreSQL text cannot)."""
    bad = _per_line_count(_positions(data, buf, _NUL), offsets) > 0
    if data.isascii():
        return bad
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        non_ascii = np.flatnonzero(_per_line_count(np.flatnonzero(buf >= 0x80), offsets) > 0)
        view = memoryview(data)
        for index in non_ascii:
            try:
                str(view[offsets[index] : offsets[index + 1]], "utf-8")
            except UnicodeDecodeError:
                bad[index] = True
    return bad


def _keep_lines(data: bytes, offsets: Lines, keep: npt.NDArray[np.bool_]) -> bytes:
    """The bytes of the kept lines only, each ending in a newline."""
    buf = np.frombuffer(data, dtype=np.uint8)
    mask = np.repeat(keep, np.diff(offsets))
    kept = buf[mask]
    if kept.size and kept[-1] != _NEWLINE:
        kept = np.append(kept, np.uint8(_NEWLINE))
    return kept.tobytes()


# -- CSV -----------------------------------------------------------------------------------


def _read_csv(data: bytes, offsets: Lines, limits: ReadLimits, choice: MappingChoice) -> FileRows:
    if len(offsets) < 2:
        return _empty_rows(InputFormat.CANONICAL, None, data, offsets, limits)
    if offsets[1] - offsets[0] > limits.max_line_bytes:
        raise FileRejectedError(
            FileRejection.HEADER_TOO_LONG,
            f"the first line has {int(offsets[1] - offsets[0]):,} bytes;"
            f" the limit is {limits.max_line_bytes:,}",
        )
    csv.field_size_limit(max(limits.max_line_bytes, csv.field_size_limit()))
    header_bytes = data[offsets[0] : offsets[1]].rstrip(b"\r\n")
    try:
        header_text = header_bytes.decode("utf-8")
    except UnicodeDecodeError as error:
        raise FileRejectedError(FileRejection.NOT_TEXT, "header is not UTF-8") from error
    if "\x00" in header_text or not header_text.isprintable():
        raise FileRejectedError(FileRejection.NOT_TEXT, "header holds control bytes")
    names = [n.strip().lower() for n in next(csv.reader([header_text]), [])]
    recognised = recognise_header(names) or BUILTIN[InputFormat.CANONICAL]
    _check_strict(choice, recognised)
    mapping = choice.given or recognised
    missing = mapping.missing_fields(names)
    if missing:
        raise FileRejectedError(
            FileRejection.UNKNOWN_HEADER,
            f"{unknown_columns_hint(names, missing)}; the header is {header_text[:200]!r}",
        )

    buf = np.frombuffer(data, dtype=np.uint8)
    body = np.ones(len(offsets) - 1, dtype=np.bool_)
    body[0] = False
    lengths = _content_lengths(buf, offsets)
    blank = lengths == 0
    too_long = (lengths > limits.max_line_bytes) & body
    bad_encoding = _bad_encoding(data, buf, offsets) & body & ~blank & ~too_long
    quote_positions = _positions(data, buf, _QUOTE)
    quotes = _per_line_count(quote_positions, offsets)
    if np.any((quotes % 2 == 1) & body & ~bad_encoding & ~too_long):
        # A quoted field spans lines: only a full CSV parser can find the records.
        return _read_csv_multiline(data, offsets, names, mapping, choice, header_text, limits)
    fields = _field_counts(data, buf, offsets, quote_positions, quotes)
    checkable = body & ~blank & ~bad_encoding & ~too_long
    # Quoting the count cannot read (a quote inside an unquoted field) is rare: csv decides.
    for index in np.flatnonzero((quotes > 0) & checkable & (fields != len(names))):
        line = data[offsets[index] : offsets[index + 1]].decode("utf-8").rstrip("\r\n")
        try:
            fields[index] = len(next(csv.reader([line]), []))
        except csv.Error:
            fields[index] = -1
    bad_columns = (fields != len(names)) & checkable
    good = body & ~blank & ~bad_encoding & ~bad_columns & ~too_long
    good_lines = np.flatnonzero(good) + 1
    flagged = [
        (bad_encoding, StructuralRule.ENCODING),
        (bad_columns, StructuralRule.COLUMN_COUNT),
        (too_long, StructuralRule.LINE_TOO_LONG),
    ]
    _reject_if_mostly_broken(data, offsets, flagged, int((body & ~blank).sum()), limits)

    payload = _keep_lines(data, offsets, good)
    frame = pl.DataFrame(schema=dict.fromkeys(names, pl.String))
    if payload:
        try:
            frame = pl.read_csv(
                payload,
                has_header=False,
                new_columns=_unique_names(names),
                infer_schema=False,
                quote_char='"',
                raise_if_empty=False,
            )
        except pl.exceptions.ComputeError:
            frame = frame.clear()  # quoting Polars reads otherwise: the exact path decides
    if frame.height != len(good_lines):
        return _read_csv_multiline(data, offsets, names, mapping, choice, header_text, limits)
    mapped, ignored_rows, unmapped = _map(
        frame.with_columns(_line=pl.Series(good_lines, dtype=pl.Int64)), mapping, choice
    )
    return FileRows(
        input_format=mapping.name,
        header=header_text,
        frame=mapped,
        rejected=_rejected_lines(flagged),
        ignored_columns=unmapped,
        data=data,
        offsets=offsets,
        limits=limits,
        ignored_rows=ignored_rows,
    )


def _rejected_lines(
    flagged: list[tuple[npt.NDArray[np.bool_], StructuralRule]],
) -> list[RejectedLine]:
    rejected = [
        RejectedLine(int(index) + 1, rule)
        for mask, rule in flagged
        for index in np.flatnonzero(mask)
    ]
    return sorted(rejected, key=lambda r: r.line_no)


def _read_csv_multiline(
    data: bytes,
    offsets: Lines,
    names: list[str],
    mapping: Mapping,
    choice: MappingChoice,
    header_text: str,
    limits: ReadLimits,
) -> FileRows:
    """Slow, exact path for files whose quoted fields contain line breaks."""
    text = data.decode("utf-8", "surrogateescape")
    pieces = text.split("\n")
    consumed = 0

    def numbered_lines() -> Iterator[str]:
        # Our line numbers count "\n" only; csv's own line_num also counts a lone "\r".
        nonlocal consumed
        for index, piece in enumerate(pieces):
            consumed = index + 1
            yield piece + "\n" if index + 1 < len(pieces) else piece

    reader = csv.reader(numbered_lines())
    next(reader, None)
    records: list[list[str]] = []
    lines: list[int] = []
    rejected: list[RejectedLine] = []
    # A record's raw text spans lines first_line..consumed; keep the first line's
    # offset and widen the offsets table so raw_line() returns the whole record.
    starts: list[int] = [0]
    previous_end = 1
    while True:
        first_line = previous_end + 1
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error:
            record = None
        previous_end = consumed
        if record is None:
            rejected.append(RejectedLine(first_line, StructuralRule.COLUMN_COUNT))
            starts.append(first_line)
            continue
        if not record:
            continue
        joined = "".join(record)
        if "\x00" in joined or any("\udc80" <= ch <= "\udcff" for ch in joined):
            rejected.append(RejectedLine(first_line, StructuralRule.ENCODING))
        elif len(record) != len(names):
            rejected.append(RejectedLine(first_line, StructuralRule.COLUMN_COUNT))
        else:
            records.append(record)
            lines.append(first_line)
        starts.append(first_line)
    record_offsets = offsets.copy()
    for first_line, next_first in zip(starts[1:], [*starts[2:], None], strict=True):
        if next_first is not None and next_first - first_line > 1:
            record_offsets[first_line] = offsets[next_first - 1]
    frame = pl.DataFrame(
        records, schema=dict.fromkeys(_unique_names(names), pl.String), orient="row"
    )
    mapped, ignored_rows, unmapped = _map(
        frame.with_columns(_line=pl.Series(lines, dtype=pl.Int64)), mapping, choice
    )
    return FileRows(
        input_format=mapping.name,
        header=header_text,
        frame=mapped,
        rejected=rejected,
        ignored_columns=unmapped,
        data=data,
        offsets=record_offsets,
        limits=limits,
        ignored_rows=ignored_rows,
    )


def _unique_names(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        count = seen.get(name, 0)
        seen[name] = count + 1
        unique.append(name if count == 0 else f"{name}__{count}")
    return unique


# -- JSON Lines ----------------------------------------------------------------------------


def _read_jsonl(data: bytes, offsets: Lines, limits: ReadLimits, choice: MappingChoice) -> FileRows:
    if len(offsets) < 2:
        return _empty_rows(InputFormat.JSONL, None, data, offsets, limits)
    buf = np.frombuffer(data, dtype=np.uint8)
    lengths = _content_lengths(buf, offsets)
    blank = lengths == 0
    too_long = lengths > limits.max_line_bytes
    bad_encoding = _bad_encoding(data, buf, offsets) & ~blank & ~too_long
    candidates = ~blank & ~bad_encoding & ~too_long
    early = [(bad_encoding, StructuralRule.ENCODING), (too_long, StructuralRule.LINE_TOO_LONG)]
    _reject_if_mostly_broken(data, offsets, early, int((~blank).sum()), limits)
    # Polars' NDJSON reader fails a whole file for one broken line, and lets a few lines
    # that are not objects through. Lines framed by braces go to it directly; the others,
    # or all lines if it still fails, are screened in one vectorised pass first.
    braced = candidates & _framed_by_braces(buf, offsets, lengths)
    bad_json = np.zeros_like(candidates)
    unbraced = candidates & ~braced
    if unbraced.any():
        bad_json[np.flatnonzero(unbraced)[~_json_objects(_keep_lines(data, offsets, unbraced))]] = (
            True
        )
    objects = candidates & ~bad_json
    frame = _read_ndjson(_keep_lines(data, offsets, objects))
    if frame is None or frame.height != int(objects.sum()):
        bad_json[
            np.flatnonzero(candidates)[~_json_objects(_keep_lines(data, offsets, candidates))]
        ] = True
        objects = candidates & ~bad_json
        frame = _read_ndjson(_keep_lines(data, offsets, objects))
        if frame is not None and frame.height != int(objects.sum()):
            frame = None
    if frame is None:
        bad_json[:] = False
    bad_fields = np.zeros_like(candidates)
    first_keys: list[str] = []
    if frame is None:
        # Values as JSON text (numbers and objects too): the mapping reads into them.
        records: list[dict[str, str | None]] = []
        for index in np.flatnonzero(candidates):
            line = data[offsets[index] : offsets[index + 1]]
            value = _json_value(line)
            if not isinstance(value, dict):
                bad_json[index] = True
                continue
            record = {str(k): _json_text(v) for k, v in value.items()}
            if any(_not_storable(text) for text in record.values()):
                bad_fields[index] = True
                continue
            first_keys = first_keys or list(record)
            records.append(record)
        keys = dict.fromkeys(k for record in records for k in record)
        frame = pl.DataFrame(records, schema=dict.fromkeys(keys, pl.String))
    else:
        first = np.flatnonzero(objects)
        if first.size:
            sample = _json_value(data[offsets[first[0]] : offsets[first[0] + 1]])
            if isinstance(sample, dict):
                first_keys = [str(k) for k in sample]
        holds_nul = _rows_holding_nul(frame)
        if holds_nul.any():
            bad_fields[first[holds_nul]] = True
            frame = frame.filter(pl.Series(~holds_nul))
    good = candidates & ~bad_json & ~bad_fields
    too_deep = _nested_too_deep(buf, offsets, lengths, bad_json)
    flagged = [
        *early,
        (bad_json & ~too_deep, StructuralRule.JSON_SYNTAX),
        (too_deep, StructuralRule.JSON_TOO_DEEP),
        (bad_fields, StructuralRule.FIELD_ENCODING),
    ]
    _reject_if_mostly_broken(data, offsets, flagged, int((~blank).sum()), limits)
    recognised = recognise_keys(first_keys)
    _check_strict(choice, recognised)
    mapping = choice.given or recognised
    mapped, ignored_rows, unmapped = _map(
        frame.with_columns(_line=pl.Series(np.flatnonzero(good) + 1, dtype=pl.Int64)),
        mapping,
        choice,
    )
    return FileRows(
        input_format=mapping.name,
        header=None,
        frame=mapped,
        rejected=_rejected_lines(flagged),
        ignored_columns=tuple(sorted(unmapped)),
        data=data,
        offsets=offsets,
        limits=limits,
        ignored_rows=ignored_rows,
    )


def _nested_too_deep(
    buf: npt.NDArray[np.uint8], offsets: Lines, lengths: Lines, failed: npt.NDArray[np.bool_]
) -> npt.NDArray[np.bool_]:
    """Of the lines no parser took, those nested deeper than the parsers go: a distinct
    reason from broken syntax. Only lines long enough to nest that deep are looked at."""
    deep = np.zeros_like(failed)
    for index in np.flatnonzero(failed & (lengths > 2 * _MAX_JSON_DEPTH)):
        line = buf[offsets[index] : offsets[index + 1]]
        steps = np.isin(line, _OPENERS).astype(np.int32) - np.isin(line, _CLOSERS)
        deep[index] = int(np.cumsum(steps).max()) > _MAX_JSON_DEPTH
    return deep


def _json_value(line: bytes) -> Any:
    """The line's JSON value, or None when it is not JSON. Nesting deeper than Python's
    parser goes (valid JSON all the same) falls back to Polars' parser for the known
    fields, the only ones ShopStream reads."""
    try:
        return json.loads(line)
    except ValueError:
        return None
    except RecursionError:
        parsed = _read_known(line)  # the known fields only: inferring the rest could explode
        return None if parsed is None or parsed.height != 1 else parsed.row(0, named=True)


def _rows_holding_nul(frame: pl.DataFrame) -> npt.NDArray[np.bool_]:
    """Rows with a value that decoded to NUL, at any depth: Polars decodes ``\\u0000`` to
    NUL and a lone surrogate escape to NUL as well, and PostgreSQL holds neither."""
    if not frame.width:
        return np.zeros(frame.height, dtype=np.bool_)
    mask = frame.select(
        pl.any_horizontal(
            (
                pl.col(name).str.contains("\x00", literal=True)
                if dtype == pl.String
                else pl.struct(pl.col(name))
                .struct.json_encode()
                .str.contains("\\u0000", literal=True)
            ).fill_null(value=False)
            for name, dtype in frame.schema.items()
        )
    ).to_series()
    holds: npt.NDArray[np.bool_] = mask.to_numpy()
    return holds


def _not_storable(text: str | None) -> bool:
    """NUL or a lone surrogate (json.loads lets both through), which PostgreSQL rejects."""
    if text is None:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return "\x00" in text


def _framed_by_braces(
    buf: npt.NDArray[np.uint8], offsets: Lines, lengths: Lines
) -> npt.NDArray[np.bool_]:
    """Lines whose first byte is ``{`` and last (before the line break) is ``}``."""
    starts = offsets[:-1]
    nonempty = lengths > 0
    first = buf[np.minimum(starts, len(buf) - 1)]
    last = buf[np.minimum(starts + np.maximum(lengths - 1, 0), len(buf) - 1)]
    framed: npt.NDArray[np.bool_] = nonempty & (first == ord("{")) & (last == ord("}"))
    return framed


def _read_ndjson(payload: bytes) -> pl.DataFrame | None:
    """Every key of every object, typed as Polars infers it over all lines (a key whose
    values disagree in type is read as text)."""
    if not payload:
        return pl.DataFrame()
    try:
        return pl.read_ndjson(payload, infer_schema_length=None)
    except pl.exceptions.PolarsError:
        return None


def _read_known(payload: bytes) -> pl.DataFrame | None:
    try:
        return pl.read_ndjson(payload, schema=_STRING_SCHEMA)
    except pl.exceptions.PolarsError:
        return None


def _json_objects(payload: bytes) -> npt.NDArray[np.bool_]:
    """Per line of ``payload`` (valid UTF-8): does it hold exactly one JSON object?"""
    lines = pl.Series([payload.decode("utf-8")]).str.strip_suffix("\n").str.split("\n").explode()
    root = lines.str.json_path_match("$")
    objects: npt.NDArray[np.bool_] = root.str.starts_with("{").fill_null(value=False).to_numpy()
    # json_path_match gives up on deep nesting: a long line it refused gets a second look.
    for index in np.flatnonzero(~objects & (lines.str.len_bytes() > _SCREEN_DEPTH).to_numpy()):
        objects[index] = isinstance(_json_value(lines[int(index)].encode()), dict)
    return objects


def _json_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value)


def _empty_rows(
    fmt: InputFormat, header: str | None, data: bytes, offsets: Lines, limits: ReadLimits
) -> FileRows:
    frame = apply_mapping(pl.DataFrame(schema={"_line": pl.Int64}), BUILTIN[fmt]).frame
    return FileRows(fmt.value, header, frame, [], (), data, offsets, limits)
