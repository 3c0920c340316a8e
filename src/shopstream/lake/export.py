"""Exactly-once export of committed batches to the lake's Delta tables.

PostgreSQL and the lake cannot commit together, so an export is an intent recorded in
PostgreSQL first and resolved from the Delta log after a crash, the way Spark's Delta sink
uses Delta's transaction versions. Each Delta commit goes:

1. Resolve an export a crash left pending: if the table's transaction version for
   ShopStream has reached its export_id the lake holds it (mark it committed); otherwise
   nothing of it reached the lake (forget it, its batches are planned again).
2. Plan the next batches the table does not hold, oldest first, up to ``max_rows`` rows,
   and record them as pending under a new export_id (committed in PostgreSQL).
3. Read their rows as Arrow (ADBC's binary COPY) and append them to the Delta table in one
   commit whose transaction version for ShopStream is the export_id.
4. Mark them committed, with each batch's row count and the Delta version.

One exporter per lake table at a time: a session advisory lock guards step 1, which would
otherwise forget another exporter's export in flight.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

import adbc_driver_postgresql.dbapi as adbc
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from psycopg import sql

from shopstream.errors import TransientError
from shopstream.lake.location import Lake, LakeTableName

log = logging.getLogger(__name__)

APP_ID: Final = "shopstream"  # the Delta transaction identifier ShopStream writes under
_MAX_BATCHES_PER_COMMIT: Final = 5_000


@dataclass(frozen=True, slots=True)
class TableSpec:
    """A lake table: the PostgreSQL table it archives, what partitions it by day, and the
    batch record's count of its rows (for planning; the ledger keeps exact counts)."""

    name: LakeTableName
    partition_column: str
    dated_by: str
    batch_rows: str


SPECS: Final[dict[LakeTableName, TableSpec]] = {
    "events": TableSpec("events", "event_date", "event_timestamp", "rows_loaded"),
    "quarantine": TableSpec("quarantine", "quarantined_date", "created_at", "rows_quarantined"),
}


@dataclass(frozen=True, slots=True)
class ExportOutcome:
    table: LakeTableName
    commits: int
    batches: int
    rows: int
    delta_version: int | None
    recovered: int  # exports a crash left pending that the lake turned out to hold
    forgotten: int  # ... and those it did not (planned again)


class ExportBusyError(TransientError):
    """Another export of the same lake table is running."""


def export_table(
    conn: psycopg.Connection[Any], url: str, lake: Lake, name: LakeTableName, *, max_rows: int
) -> ExportOutcome:
    """Export every committed batch ``name`` does not hold yet; ``conn`` is autocommit."""
    spec = SPECS[name]
    uri = lake.table_uri(name)
    with _exclusive(conn, uri):
        recovered, forgotten = _resolve_pending(conn, lake, spec)  # Step 1
        commits = batches = rows = 0
        version: int | None = None
        with adbc.connect(url) as reader:
            while plan := _plan(conn, uri, spec, max_rows):  # Step 2
                export_id, batch_ids = plan
                data = _read(conn, reader, spec, batch_ids)  # Step 3
                if data.num_rows:
                    _append(lake, spec, data, export_id, batch_ids)
                    opened = lake.open(name)
                    version = opened.version() if opened else None
                _mark_committed(conn, uri, spec, export_id, data, version)  # Step 4
                commits, batches, rows = commits + 1, batches + len(batch_ids), rows + data.num_rows
                log.info("lake %s: export %d, %d batches, %d rows", name, export_id,
                         len(batch_ids), data.num_rows)  # fmt: skip
    return ExportOutcome(name, commits, batches, rows, version, recovered, forgotten)


@contextlib.contextmanager
def _exclusive(conn: psycopg.Connection[Any], uri: str) -> Iterator[None]:
    """A session advisory lock on the lake table for the export's whole run."""
    key = f"shopstream.lake.{uri}"
    row = conn.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (key,)).fetchone()
    if not (row and row[0]):
        raise ExportBusyError(f"another export to {uri} is running")
    try:
        yield
    finally:
        if not conn.closed and not conn.broken:
            conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (key,))


def _resolve_pending(conn: psycopg.Connection[Any], lake: Lake, spec: TableSpec) -> tuple[int, int]:
    uri = lake.table_uri(spec.name)
    pending = [
        int(row[0])
        for row in conn.execute(
            """SELECT DISTINCT export_id FROM lake_exports
                WHERE lake_uri = %s AND lake_table = %s AND status = 'pending'""",
            (uri, spec.name),
        )
    ]
    if not pending:
        return 0, 0
    table = lake.open(spec.name)
    held = (table.transaction_version(APP_ID) if table else None) or 0
    recovered = [e for e in pending if e <= held]
    forgotten = [e for e in pending if e > held]
    with conn.transaction():
        for export_id in recovered:
            held_rows = _lake_counts(table, conn, uri, spec, export_id) if table else _NO_ROWS
            _mark_committed(
                conn, uri, spec, export_id, held_rows, table.version() if table else None
            )
        if forgotten:
            conn.execute(
                """DELETE FROM lake_exports
                    WHERE lake_uri = %s AND lake_table = %s AND export_id = ANY(%s)""",
                (uri, spec.name, forgotten),
            )
    log.warning("lake %s: resolved pending exports: %s held, %s not", spec.name, recovered,
                forgotten)  # fmt: skip
    return len(recovered), len(forgotten)


_NO_ROWS: Final = pa.table({"batch_id": pa.array([], pa.int64())})


def _lake_counts(
    table: DeltaTable, conn: psycopg.Connection[Any], uri: str, spec: TableSpec, export_id: int
) -> pa.Table:
    """The batch ids of an export's rows, read back from the lake (after a crash, the one
    place that knows how many rows each batch contributed)."""
    batch_ids = [
        int(row[0])
        for row in conn.execute(
            """SELECT batch_id FROM lake_exports
                WHERE lake_uri = %s AND lake_table = %s AND export_id = %s""",
            (uri, spec.name, export_id),
        )
    ]
    return table.to_pyarrow_table(columns=["batch_id"], filters=[("batch_id", "in", batch_ids)])


def _plan(
    conn: psycopg.Connection[Any], uri: str, spec: TableSpec, max_rows: int
) -> tuple[int, list[int]] | None:
    """The next batches to export, recorded as pending under a new export_id."""
    with conn.transaction():
        candidates = conn.execute(
            sql.SQL(
                """SELECT b.batch_id, b.{rows} FROM batches b
                    WHERE NOT EXISTS (SELECT 1 FROM lake_exports l
                                       WHERE l.lake_uri = %s AND l.lake_table = %s
                                         AND l.batch_id = b.batch_id)
                    ORDER BY b.batch_id LIMIT %s"""
            ).format(rows=sql.Identifier(spec.batch_rows)),
            (uri, spec.name, _MAX_BATCHES_PER_COMMIT),
        ).fetchall()
        if not candidates:
            return None
        chosen: list[int] = []
        total = 0
        for batch_id, rows in candidates:
            if chosen and total + int(rows) > max_rows:
                break
            chosen.append(int(batch_id))
            total += int(rows)
        row = conn.execute("SELECT nextval('lake_export_id_seq')").fetchone()
        assert row is not None
        export_id = int(row[0])
        conn.execute(
            """INSERT INTO lake_exports (lake_uri, lake_table, batch_id, export_id, rows, status)
               SELECT %s, %s, b, %s, 0, 'pending' FROM unnest(%s::bigint[]) AS b""",
            (uri, spec.name, export_id, chosen),
        )
    return export_id, chosen


def _read(
    conn: psycopg.Connection[Any], reader: Any, spec: TableSpec, batch_ids: list[int]
) -> pa.Table:
    """The batches' rows, typed for Delta: uuids as text, numerics as decimals, JSON as
    its text, plus the day partition. Columns follow the table, so one added to it reaches
    the lake on the next export (the Delta schema is merged)."""
    columns = conn.execute(
        """SELECT attname, format_type(atttypid, NULL), atttypmod FROM pg_attribute
            WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped
            ORDER BY attnum""",
        (spec.name,),
    ).fetchall()
    select = [
        sql.SQL("{c}::text AS {c}").format(c=sql.Identifier(name))
        if pg_type == "uuid"
        else sql.Identifier(name)
        for name, pg_type, _ in columns
    ]
    query = sql.SQL(
        "SELECT {columns} FROM {table} WHERE batch_id BETWEEN {low} AND {high}"
        " AND batch_id = ANY({ids}::bigint[])"
    ).format(
        columns=sql.SQL(", ").join(select),
        table=sql.Identifier(spec.name),
        low=sql.Literal(min(batch_ids)),
        high=sql.Literal(max(batch_ids)),
        ids=sql.Literal(batch_ids),
    )
    with reader.cursor() as cursor:
        cursor.execute(query.as_string(conn))
        table: pa.Table = cursor.fetch_arrow_table()
    numeric = {name: typmod for name, pg_type, typmod in columns if pg_type == "numeric"}
    table = pa.table(dict(_arrow_columns(table, numeric)))
    day = pc.cast(table.column(spec.dated_by), pa.date32())
    return table.append_column(spec.partition_column, day)


def _arrow_columns(
    table: pa.Table, numeric: dict[str, int]
) -> Iterator[tuple[str, pa.ChunkedArray]]:
    for field, column in zip(table.schema, table.columns, strict=True):
        values = column
        if isinstance(field.type, pa.ExtensionType):  # JSON, PostgreSQL's opaque numeric
            values = pa.chunked_array(
                [chunk.storage for chunk in column.chunks], type=field.type.storage_type
            )
        if field.name in numeric:
            typmod = numeric[field.name]
            target = (
                pa.decimal128((typmod - 4) >> 16, (typmod - 4) & 0xFFFF)
                if typmod >= 4
                else pa.float64()
            )
            values = pc.cast(values, target)
        yield field.name, values


def _append(
    lake: Lake, spec: TableSpec, data: pa.Table, export_id: int, batch_ids: list[int]
) -> None:
    write_deltalake(
        lake.table_uri(spec.name),
        data,
        mode="append",
        partition_by=[spec.partition_column],
        schema_mode="merge",
        storage_options=lake.storage_options,
        commit_properties=CommitProperties(
            app_transactions=[Transaction(APP_ID, export_id)],
            custom_metadata={
                "shopstream.export_id": str(export_id),
                "shopstream.batches": f"{min(batch_ids)}..{max(batch_ids)}",
            },
        ),
    )


def _mark_committed(
    conn: psycopg.Connection[Any],
    uri: str,
    spec: TableSpec,
    export_id: int,
    data: pa.Table,
    version: int | None,
) -> None:
    counts = data.group_by("batch_id").aggregate([("batch_id", "count")])
    with conn.transaction():
        conn.execute(
            """UPDATE lake_exports l
                  SET status = 'committed', delta_version = %s,
                      rows = coalesce(c.n, 0), exported_at = now()
                 FROM lake_exports p
                 LEFT JOIN unnest(%s::bigint[], %s::bigint[]) AS c (batch_id, n)
                   ON c.batch_id = p.batch_id
                WHERE l.lake_uri = p.lake_uri AND l.lake_table = p.lake_table
                  AND l.batch_id = p.batch_id
                  AND p.lake_uri = %s AND p.lake_table = %s AND p.export_id = %s""",
            (
                version,
                counts.column("batch_id").to_pylist(),
                counts.column("batch_id_count").to_pylist(),
                uri,
                spec.name,
                export_id,
            ),
        )
