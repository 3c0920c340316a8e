"""Split a file's bytes into rows of text fields, keeping every line accountable.

Structural checks (line breaks, field counts, bad bytes) run as numpy passes over the raw
buffer; Polars then parses the well-formed lines in Rust. Raw text is sliced back out of the
buffer only for the lines that end up quarantined, so a clean file costs no per-row Python.
"""

from __future__ import annotations

import csv
import gzip
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt
import polars as pl

from shopstream.engines.embedded.formats import ADAPTERS
from shopstream.schema import (
    ADAPTER_FIELDS,
    FIELD_NAMES,
    REQUIRED_FIELDS,
    SEED_COLUMNS,
    InputFormat,
)
from shopstream.validation.rules import FileRejection, StructuralRule

_BOM: Final = b"\xef\xbb\xbf"
_NEWLINE, _CR, _COMMA, _QUOTE, _NUL = 10, 13, 44, 34, 0
_KNOWN: Final = frozenset(FIELD_NAMES)
_STRING_SCHEMA: Final = {name: pl.String for name in FIELD_NAMES}

Lines = npt.NDArray[np.int64]


class FileRejectedError(Exception):
    """The file cannot be split into rows; it is quarantined as a whole."""

    def __init__(self, reason: FileRejection, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(slots=True)
class RejectedLine:
    line_no: int
    rule: StructuralRule


@dataclass(slots=True)
class FileRows:
    """A file as rows: string columns named canonically, plus ``_line`` (1-based)."""

    input_format: InputFormat
    header: str | None
    frame: pl.DataFrame
    rejected: list[RejectedLine]
    ignored_columns: tuple[str, ...]
    data: bytes = field(repr=False)
    offsets: Lines = field(repr=False)

    @property
    def rows_read(self) -> int:
        return self.frame.height + len(self.rejected)

    def raw_line(self, line_no: int) -> tuple[str, bytes | None]:
        """The line as text, and its exact bytes when the text cannot hold them."""
        start, end = int(self.offsets[line_no - 1]), int(self.offsets[line_no])
        raw = self.data[start:end].rstrip(b"\r\n")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            shown = raw.decode("utf-8", "backslashreplace")
            return shown.replace("\x00", "\\x00"), raw
        if "\x00" in text:
            return text.replace("\x00", "\\x00"), raw
        return text, None


def decode_container(data: bytes, name: str) -> bytes:
    """Undo gzip compression (by name or magic number); leave plain files as they are."""
    if name.endswith(".gz") or data[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as error:
            raise FileRejectedError(FileRejection.UNREADABLE, f"bad gzip data: {error}") from error
    return data


def detect_format(name: str) -> InputFormat | None:
    """JSON Lines by extension; CSV files are told apart (seed vs canonical) by header."""
    stem = name.removesuffix(".gz")
    if stem.endswith((".jsonl", ".ndjson")):
        return InputFormat.JSONL
    if stem.endswith(".csv"):
        return InputFormat.CANONICAL
    return None


def read_rows(data: bytes, name: str, expected: InputFormat | None = None) -> FileRows:
    """Parse one file (already decompressed) into rows; with ``expected``, a file in any
    other format is rejected (the seed layout counts as canonical CSV)."""
    if data.startswith(_BOM):
        data = data[len(_BOM) :]
    offsets = _line_offsets(data)
    jsonl = (
        detect_format(name) is InputFormat.JSONL
        if expected is None
        else expected is InputFormat.JSONL
    )
    rows = _read_jsonl(data, offsets) if jsonl else _read_csv(data, offsets)
    found = InputFormat.CANONICAL if rows.input_format is InputFormat.SEED else rows.input_format
    if expected not in (None, rows.input_format, found):
        raise FileRejectedError(
            FileRejection.FORMAT_MISMATCH, f"--format {expected} given, the header is {found}"
        )
    return rows


# -- shared line machinery -----------------------------------------------------------------


def _line_offsets(data: bytes) -> Lines:
    """Start offset of every line plus the end of the data; a line keeps its newline."""
    buf = np.frombuffer(data, dtype=np.uint8)
    breaks = np.flatnonzero(buf == _NEWLINE).astype(np.int64) + 1
    offsets = np.concatenate((np.zeros(1, dtype=np.int64), breaks))
    if offsets[-1] != len(data):
        offsets = np.append(offsets, np.int64(len(data)))
    return offsets


def _per_line_count(mask: npt.NDArray[np.bool_], offsets: Lines) -> Lines:
    if len(offsets) < 2:
        return np.zeros(0, dtype=np.int64)
    counts: Lines = np.add.reduceat(mask.astype(np.int64), offsets[:-1])
    return counts


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
    bad = _per_line_count(buf == _NUL, offsets) > 0
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        non_ascii = np.flatnonzero(_per_line_count(buf >= 0x80, offsets) > 0)
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


def _read_csv(data: bytes, offsets: Lines) -> FileRows:
    if len(offsets) < 2:
        return _empty_rows(InputFormat.CANONICAL, None, data, offsets)
    header_bytes = data[offsets[0] : offsets[1]].rstrip(b"\r\n")
    try:
        header_text = header_bytes.decode("utf-8")
    except UnicodeDecodeError as error:
        raise FileRejectedError(FileRejection.NOT_TEXT, "header is not UTF-8") from error
    if "\x00" in header_text or not header_text.isprintable():
        raise FileRejectedError(FileRejection.NOT_TEXT, "header holds control bytes")
    names = [n.strip().lower() for n in next(csv.reader([header_text]), [])]
    adapter = ADAPTERS.get(tuple(names))
    missing = [r for r in REQUIRED_FIELDS if r not in names]
    if missing and adapter is None:
        raise FileRejectedError(
            FileRejection.UNKNOWN_HEADER, f"missing {', '.join(missing)} in {header_text[:200]!r}"
        )
    ignored: tuple[str, ...] = ()
    if adapter is not None:
        input_format = adapter.input_format
    else:
        input_format = InputFormat.SEED if tuple(names) == SEED_COLUMNS else InputFormat.CANONICAL
        ignored = tuple(n for n in names if n not in _KNOWN)

    buf = np.frombuffer(data, dtype=np.uint8)
    body = np.ones(len(offsets) - 1, dtype=np.bool_)
    body[0] = False
    blank = _content_lengths(buf, offsets) == 0
    bad_encoding = _bad_encoding(data, buf, offsets) & body & ~blank
    quotes = _per_line_count(buf == _QUOTE, offsets)
    if np.any((quotes % 2 == 1) & body & ~bad_encoding):
        # A quoted field spans lines: only a full CSV parser can find the records.
        return _read_csv_multiline(data, offsets, names, input_format, header_text, ignored)
    fields = _per_line_count(buf == _COMMA, offsets) + 1
    for index in np.flatnonzero((quotes > 0) & body & ~bad_encoding & ~blank):
        line = data[offsets[index] : offsets[index + 1]].decode("utf-8").rstrip("\r\n")
        try:
            fields[index] = len(next(csv.reader([line]), []))
        except csv.Error:
            fields[index] = -1
    bad_columns = (fields != len(names)) & body & ~blank & ~bad_encoding
    good = body & ~blank & ~bad_encoding & ~bad_columns
    good_lines = np.flatnonzero(good) + 1

    payload = _keep_lines(data, offsets, good)
    frame = pl.DataFrame(schema=dict.fromkeys(names, pl.String))
    if payload:
        frame = pl.read_csv(
            payload,
            has_header=False,
            new_columns=_unique_names(names),
            infer_schema=False,
            quote_char='"',
            raise_if_empty=False,
        )
    if frame.height != len(good_lines):
        return _read_csv_multiline(data, offsets, names, input_format, header_text, ignored)
    rejected = [
        RejectedLine(int(i) + 1, StructuralRule.ENCODING) for i in np.flatnonzero(bad_encoding)
    ] + [RejectedLine(int(i) + 1, StructuralRule.COLUMN_COUNT) for i in np.flatnonzero(bad_columns)]
    return FileRows(
        input_format=input_format,
        header=header_text,
        frame=_canonical(frame, names).with_columns(_line=pl.Series(good_lines, dtype=pl.Int64)),
        rejected=sorted(rejected, key=lambda r: r.line_no),
        ignored_columns=ignored,
        data=data,
        offsets=offsets,
    )


def _read_csv_multiline(
    data: bytes,
    offsets: Lines,
    names: list[str],
    input_format: InputFormat,
    header_text: str,
    ignored: tuple[str, ...],
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
    return FileRows(
        input_format=input_format,
        header=header_text,
        frame=_canonical(frame, names).with_columns(_line=pl.Series(lines, dtype=pl.Int64)),
        rejected=rejected,
        ignored_columns=ignored,
        data=data,
        offsets=record_offsets,
    )


def _unique_names(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        count = seen.get(name, 0)
        seen[name] = count + 1
        unique.append(name if count == 0 else f"{name}__{count}")
    return unique


def _canonical(frame: pl.DataFrame, names: list[str]) -> pl.DataFrame:
    """Keep the known columns (first occurrence), in canonical order; a foreign export
    (recognised by its header) is mapped onto them, plus its adapter's own fields."""
    adapter = ADAPTERS.get(tuple(names))
    if adapter is not None:
        mapped = adapter.to_canonical(frame)
        return mapped.select(n for n in (*FIELD_NAMES, *ADAPTER_FIELDS) if n in mapped.columns)
    return frame.select(n for n in FIELD_NAMES if n in names)


# -- JSON Lines ----------------------------------------------------------------------------


def _read_jsonl(data: bytes, offsets: Lines) -> FileRows:
    if len(offsets) < 2:
        return _empty_rows(InputFormat.JSONL, None, data, offsets)
    buf = np.frombuffer(data, dtype=np.uint8)
    lengths = _content_lengths(buf, offsets)
    blank = lengths == 0
    bad_encoding = _bad_encoding(data, buf, offsets) & ~blank
    candidates = ~blank & ~bad_encoding
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
    ignored: set[str] = set()
    if frame is None:
        records: list[dict[str, str | None]] = []
        for index in np.flatnonzero(candidates):
            line = data[offsets[index] : offsets[index + 1]]
            try:
                value = json.loads(line)
            except ValueError:
                value = None
            if not isinstance(value, dict):
                bad_json[index] = True
                continue
            ignored.update(k for k in value if k not in _KNOWN)
            records.append({name: _json_text(value.get(name)) for name in FIELD_NAMES})
        frame = pl.DataFrame(records, schema=_STRING_SCHEMA)
    else:
        first = np.flatnonzero(objects)
        if first.size:
            sample = json.loads(data[offsets[first[0]] : offsets[first[0] + 1]])
            ignored.update(k for k in sample if k not in _KNOWN)
    good = candidates & ~bad_json
    rejected = [
        RejectedLine(int(i) + 1, StructuralRule.ENCODING) for i in np.flatnonzero(bad_encoding)
    ] + [RejectedLine(int(i) + 1, StructuralRule.JSON_SYNTAX) for i in np.flatnonzero(bad_json)]
    return FileRows(
        input_format=InputFormat.JSONL,
        header=None,
        frame=frame.with_columns(_line=pl.Series(np.flatnonzero(good) + 1, dtype=pl.Int64)),
        rejected=sorted(rejected, key=lambda r: r.line_no),
        ignored_columns=tuple(sorted(ignored)),
        data=data,
        offsets=offsets,
    )


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
    if not payload:
        return pl.DataFrame(schema=_STRING_SCHEMA)
    try:
        return pl.read_ndjson(payload, schema=_STRING_SCHEMA)
    except pl.exceptions.PolarsError:
        return None


def _json_objects(payload: bytes) -> npt.NDArray[np.bool_]:
    """Per line of ``payload`` (valid UTF-8): does it hold exactly one JSON object?"""
    lines = pl.Series([payload.decode("utf-8")]).str.strip_suffix("\n").str.split("\n").explode()
    root = lines.str.json_path_match("$")
    return root.str.starts_with("{").fill_null(value=False).to_numpy()


def _json_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value)


def _empty_rows(fmt: InputFormat, header: str | None, data: bytes, offsets: Lines) -> FileRows:
    frame = pl.DataFrame(schema={**_STRING_SCHEMA, "_line": pl.Int64})
    return FileRows(fmt, header, frame, [], (), data, offsets)
