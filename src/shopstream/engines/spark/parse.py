"""Executor side: files (Spark's ``binaryFile`` rows) or Kafka messages (the ``kafka``
source's rows) -> one Arrow table of typed rows, structural quarantine rows and per-file
outcomes.

Each file is split into rows by the very function the embedded engine uses
(:func:`~shopstream.parse.batch.parse_file`), so structural rules (encoding,
column count, JSON syntax, whole-file rejections) and every format adapter behave alike on
both engines. The row rules are *not* applied here: Spark evaluates them afterwards, from
the same rule definitions.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterator
from typing import Final

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from shopstream.contract import IncomingFile
from shopstream.parse.batch import parse_file
from shopstream.parse.mapping import NO_CHOICE, MappingChoice
from shopstream.parse.normalize import ADAPTER_SCHEMA, normalize
from shopstream.parse.reader import FileRows
from shopstream.schema import FIELD_NAMES, TYPED_FIELDS
from shopstream.sources.kafka_framing import as_files, chunk_path, first_line
from shopstream.validation.limits import DEFAULT_LIMITS, ReadLimits

ROW, QUARANTINE, FILE = "row", "quarantine", "file"

_ARROW: Final[dict[pl.DataType, pa.DataType]] = {
    pl.String(): pa.string(),
    pl.Float64(): pa.float64(),
    pl.Int64(): pa.int64(),
    pl.Datetime("us"): pa.timestamp("us"),
}
_EVENT_TYPES: Final[dict[str, pa.DataType]] = {
    **{name: pa.string() for name in FIELD_NAMES},
    "event_timestamp": pa.timestamp("us"),
    "price": pa.float64(),
    "quantity": pa.int64(),
    **{f"raw_{name}": pa.string() for name in TYPED_FIELDS},
    **{name: _ARROW[dtype] for name, dtype in ADAPTER_SCHEMA.items()},
}
# A row's kind, its source, and the fields of a file's ledger outcome (FILE rows only).
OUTCOME_FIELDS: Final[list[tuple[str, pa.DataType]]] = [
    ("kind", pa.string()),
    ("source", pa.string()),
    ("content_hash", pa.string()),
    ("size_bytes", pa.int64()),
    ("status", pa.string()),
    ("rows_read", pa.int64()),
    ("rows_ignored", pa.int64()),
    ("input_format", pa.string()),
    ("ignored_columns", pa.list_(pa.string())),
]
PARSED_SCHEMA: Final = pa.schema(
    [
        *OUTCOME_FIELDS,
        ("line_no", pa.int64()),
        ("rules", pa.list_(pa.string())),
        ("raw", pa.string()),
        ("raw_bytes", pa.binary()),
        ("format", pa.string()),
        ("header", pa.string()),
        ("raw_size", pa.int64()),
        ("raw_sha256", pa.string()),
        ("fields", pa.list_(pa.string())),
        ("records", pa.int64()),
        *_EVENT_TYPES.items(),
    ]
)


def spark_ddl(schema: pa.Schema = PARSED_SCHEMA) -> str:
    """An Arrow schema (by default ``PARSED_SCHEMA``) as a Spark DDL string."""
    names = {
        pa.string(): "STRING",
        pa.int64(): "BIGINT",
        pa.float64(): "DOUBLE",
        pa.binary(): "BINARY",
        pa.timestamp("us"): "TIMESTAMP_NTZ",
        pa.list_(pa.string()): "ARRAY<STRING>",
        pa.list_(pa.int64()): "ARRAY<BIGINT>",
    }
    return ", ".join(f"`{f.name}` {names[f.type]}" for f in schema)


def local_path(path: str) -> str:
    """Spark's ``file:/x`` is ``/x`` in the ledger, as the embedded engine writes it."""
    return path.removeprefix("file://").removeprefix("file:")


def parse_files(
    batches: Iterator[pa.RecordBatch],
    choice: MappingChoice = NO_CHOICE,
    limits: ReadLimits = DEFAULT_LIMITS,
) -> Iterator[pa.RecordBatch]:
    """``mapInArrow`` body: ``binaryFile`` rows in, :data:`PARSED_SCHEMA` rows out."""
    for batch in batches:
        paths = batch.column("path").to_pylist()
        contents = batch.column("content").to_pylist()
        for path, content in zip(paths, contents, strict=True):
            data = bytes(content or b"")
            incoming = IncomingFile(local_path(path), data, hashlib.sha256(data).hexdigest())
            yield from _parsed(incoming, choice, limits)


def parse_messages(
    batches: Iterator[pa.RecordBatch],
    limits: ReadLimits = DEFAULT_LIMITS,
    choice: MappingChoice = NO_CHOICE,
) -> Iterator[pa.RecordBatch]:
    """``mapInArrow`` body: ``kafka`` source rows (topic, partition, offset, value) in,
    :data:`PARSED_SCHEMA` rows out, framed as the embedded Kafka source frames them; rows
    name ``kafka://topic/partition`` and carry the message offset as their line."""
    for batch in batches:
        table = pa.Table.from_batches([batch]).sort_by(
            [("topic", "ascending"), ("partition", "ascending"), ("offset", "ascending")]
        )
        offsets = table.column("offset").to_pylist()
        values = [bytes(v or b"") for v in table.column("value").to_pylist()]
        partitions = zip(
            table.column("topic").to_pylist(), table.column("partition").to_pylist(), strict=True
        )
        start = 0
        for (topic, partition), rows in itertools.groupby(partitions):
            end = start + sum(1 for _ in rows)
            for suffix, chunk_offsets, _, data in as_files(offsets[start:end], values[start:end]):
                incoming = IncomingFile(
                    chunk_path(topic, partition, chunk_offsets, suffix), data, content_hash=""
                )
                for parsed in _parsed(incoming, choice, limits.for_messages()):
                    yield _at_offsets(
                        parsed, f"kafka://{topic}/{partition}", chunk_offsets, first_line(suffix)
                    )
            start = end


def _at_offsets(
    parsed: pa.RecordBatch, source: str, offsets: list[int], first: int
) -> pa.RecordBatch:
    """A framed chunk's rows renamed to their partition, line numbers to message offsets."""
    lines = parsed.column(PARSED_SCHEMA.get_field_index("line_no")).to_numpy(zero_copy_only=False)
    known = ~np.isnan(lines.astype(np.float64))
    at_offsets = np.zeros(len(lines), dtype=np.int64)
    at_offsets[known] = np.asarray(offsets, dtype=np.int64)[lines[known].astype(np.int64) - first]
    columns = dict(zip(PARSED_SCHEMA.names, parsed.columns, strict=True))
    columns["source"] = pa.array([source] * parsed.num_rows, type=pa.string())
    columns["line_no"] = pa.array(at_offsets, mask=~known, type=pa.int64())
    return pa.RecordBatch.from_arrays(list(columns.values()), schema=PARSED_SCHEMA)


def _parsed(
    incoming: IncomingFile, choice: MappingChoice, limits: ReadLimits
) -> Iterator[pa.RecordBatch]:
    result = parse_file(incoming, choice, limits)
    outcome = result.outcome
    yield _table(
        {
            "kind": [FILE],
            "source": [outcome.path],
            "content_hash": [outcome.content_hash],
            "size_bytes": [outcome.size_bytes],
            "status": [outcome.status.value],
            "rows_read": [outcome.rows_read],
            "rows_ignored": [outcome.rows_ignored],
            "input_format": [outcome.input_format],
            "ignored_columns": [list(outcome.ignored_columns)],
        },
        1,
    )
    if result.quarantine is not None and result.quarantine.height:
        quarantine = result.quarantine.drop("scope").to_dict(as_series=False)
        yield _table({"kind": [QUARANTINE] * result.quarantine.height, **quarantine},
                     result.quarantine.height)  # fmt: skip
    if result.rows is not None and result.rows.frame.height:
        yield _rows(incoming, result.rows)


def _rows(incoming: IncomingFile, rows: FileRows) -> pa.RecordBatch:
    typed = normalize(rows.frame)
    height = typed.height
    columns: dict[str, object] = {
        name: typed[name].to_arrow().cast(kind) for name, kind in _EVENT_TYPES.items()
    }
    return _table(
        {
            "kind": [ROW] * height,
            "source": [incoming.path] * height,
            "line_no": typed["_line"].to_arrow().cast(pa.int64()),
            "raw": _raw_lines(rows, typed["_line"]),
            "format": [rows.input_format] * height,
            "header": [rows.header] * height,
            **columns,
        },
        height,
    )


def _raw_lines(rows: FileRows, lines: pl.Series) -> pa.Array:
    """Each row's line as received (without its line break): the file's bytes seen as one
    value per line (no copy), of which Arrow takes the rows' lines; rows are well-formed
    UTF-8 by construction (bad bytes are structural rejections)."""
    every_line = pa.Array.from_buffers(
        pa.large_binary(),
        len(rows.offsets) - 1,
        [None, pa.py_buffer(rows.offsets.astype(np.int64)), pa.py_buffer(rows.data)],
    )
    picked = every_line.take(pa.array(lines.to_numpy().astype(np.int64) - 1))
    return pc.utf8_rtrim(picked.cast(pa.large_string()), characters="\r\n")


def _table(columns: dict[str, object], height: int) -> pa.RecordBatch:
    arrays = []
    for field in PARSED_SCHEMA:
        value = columns.get(field.name)
        if value is None:
            arrays.append(pa.nulls(height, type=field.type))
        elif isinstance(value, pa.Array | pa.ChunkedArray):
            arrays.append(value.cast(field.type))
        else:
            arrays.append(pa.array(value, type=field.type))
    return pa.RecordBatch.from_arrays(
        [a.combine_chunks() if isinstance(a, pa.ChunkedArray) else a for a in arrays],
        schema=PARSED_SCHEMA,
    )
