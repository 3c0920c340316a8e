"""Per-batch staging for engines whose workers write their rows themselves (Spark
executors), so that no row passes through the driver.

Each worker task COPYs its partition's valid rows and quarantine rows into UNLOGGED tables
of its own in schema ``shopstream_staging``, named by the batch's stage prefix and the
task's partition. A retried or speculative attempt replaces them whole (lock, drop,
create, COPY, commit in one transaction), so a task run twice stages its rows once. The
loader then moves the staged rows into the store inside the batch's commit and drops the
tables in the same transaction (see :meth:`shopstream.store.loader.Loader.load`). A batch
that died on the way leaves tables that the next attempt at the same stage, or the next
start of the query, drops (:func:`drop_stage`).
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime
from typing import Final

import polars as pl
import psycopg
from psycopg import sql

from shopstream.contract import StagedPart, StagedRows
from shopstream.errors import TerminalError
from shopstream.parse.normalize import EVENT_SCHEMA
from shopstream.schema import EVENT_FIELDS, FIELD_NAMES
from shopstream.store.copy import QUARANTINE_COLUMNS, carried, copy_frame
from shopstream.store.derived import Derived, derive

STAGING_SCHEMA: Final = "shopstream_staging"
# The batch's ids the store held before its merge (a temporary table of the loader's
# transaction, dropped at its end).
_STORED: Final = sql.Identifier("pg_temp", "shopstream_stored_ids")
# Where a staged row came from: the first of several rows with one event id wins, as in
# the embedded engine (which keeps the first by source and line).
_ORIGIN: Final = ("source", "line_no")
# How the inserted rows come back for deriving rollups and scoring (typed as the engines
# build them: text ids and JSON, naive UTC microseconds, float money).
_RETURNED: Final = {
    "uuid": "{}::text",
    "timestamp": "(extract(epoch FROM {}) * 1000000)::bigint",
    "money": "{}::float8",
    "json": "{}::text",
}
_RETURNED_TYPES: Final[dict[str, pl.DataType]] = {
    "timestamp": pl.Int64(),
    "money": pl.Float64(),
    "integer": pl.Int64(),
}


@dataclass(frozen=True, slots=True)
class MergedEvents:
    """What moving a batch's staged events did. ``events``: the inserted rows, when asked
    for (to derive rollups and score orders from), and ``derived``: their rollup deltas
    and sessions, when asked for too; ``time_range``: of the batch's distinct valid rows,
    as the batch record keeps it."""

    inserted: int
    duplicates_in_batch: int
    duplicates_in_store: int
    late: int
    time_range: tuple[datetime | None, datetime | None]
    events: pl.DataFrame | None
    derived: Derived | None = None


@dataclass(frozen=True, slots=True)
class _ReadBack:
    """What :class:`StagedReader` found: how many distinct ids the stage held, the rows
    the merge inserts (flagged ``arrived_late``), and what they derive, if asked."""

    distinct: int
    rows: pl.DataFrame
    derived: Derived | None


def part_tables(prefix: str, part: int) -> tuple[str, str]:
    """The events and quarantine staging tables of one partition of a stage."""
    return f"{prefix}p{part}_e", f"{prefix}p{part}_q"


def stage_partition(
    conn: psycopg.Connection[tuple[object, ...]],
    prefix: str,
    part: int,
    events: pl.DataFrame,
    quarantine: pl.DataFrame,
) -> StagedPart:
    """Replace partition ``part``'s staging tables with ``events`` (FIELD_NAMES plus
    source and line) and ``quarantine`` (stored form, QUARANTINE_COLUMNS); commits."""
    events_table, quarantine_table = part_tables(prefix, part)
    with conn.transaction():
        conn.execute("SET LOCAL TIME ZONE 'UTC'")
        conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext(%s))", (f"{STAGING_SCHEMA}.{events_table}",)
        )
        for name in (events_table, quarantine_table):
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(_staged(name)))
        if events.height:
            conn.execute(
                sql.SQL(
                    "CREATE UNLOGGED TABLE {} AS SELECT {}, NULL::text AS source,"
                    " NULL::bigint AS line_no FROM events WITH NO DATA"
                ).format(_staged(events_table), _columns(FIELD_NAMES))
            )
            present = carried(events, (*FIELD_NAMES, *_ORIGIN))
            copy_frame(conn, _staged(events_table), present, events.select(present), freeze=True)
        if quarantine.height:
            conn.execute(
                sql.SQL(
                    "CREATE UNLOGGED TABLE {} AS SELECT {} FROM quarantine WITH NO DATA"
                ).format(_staged(quarantine_table), _columns(QUARANTINE_COLUMNS))
            )
            copy_frame(conn, _staged(quarantine_table), QUARANTINE_COLUMNS, quarantine, freeze=True)
    return StagedPart(
        events_table if events.height else None,
        quarantine_table if quarantine.height else None,
        events.height,
        quarantine.height,
        int(quarantine["records"].sum()) if quarantine.height else 0,
    )


def drop_stage(conn: psycopg.Connection[tuple[object, ...]], prefix: str) -> int:
    """Drop every staging table whose name starts with ``prefix``; returns how many. Runs
    in the caller's transaction, if any."""
    names = [
        str(row[0])
        for row in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s AND starts_with(tablename, %s)",
            (STAGING_SCHEMA, prefix),
        ).fetchall()
    ]
    if names:
        conn.execute(
            sql.SQL("DROP TABLE IF EXISTS {}").format(
                sql.SQL(", ").join(_staged(name) for name in names)
            )
        )
    return len(names)


class StagingMismatchError(TerminalError):
    """The staging tables do not hold what the workers reported staging: committing would
    break the batch's accounting, and a retry of the same commit reads the same tables."""


class StagedReader:
    """Reads a staged batch's distinct rows on a connection of its own, in a thread of its
    own, while the loader's connection moves them into the store.

    The staging tables were committed by the workers, so any connection sees them. With
    rollups or scoring the loader needs exactly the rows it inserts; reading them back from
    the insert itself keeps PostgreSQL on one core (the insert, then formatting a million
    rows), while read apart a second core formats them, and derives the rollups from them,
    during the insert. The ids the store already held are left out as the merge leaves
    them out (see :func:`merge_staged`)."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="staged-reader")

    def start(
        self, tables: list[str], late_before: datetime, stored: list[str], *, derived: bool
    ) -> Future[_ReadBack]:
        """Begin reading the first row of each id of ``tables`` (by source and line, as the
        merge chooses it) that ``stored`` does not list, flagged late as the merge flags
        it, and deriving rollups and sessions from those rows when ``derived``."""
        return self._thread.submit(self._read, tables, late_before, stored, derived)

    def close(self) -> None:
        self._thread.shutdown(wait=True)
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _read(
        self, tables: list[str], late_before: datetime, stored: list[str], derived: bool
    ) -> _ReadBack:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = psycopg.connect(
                self._url, autocommit=True, connect_timeout=5, application_name="shopstream"
            )
            self._conn.execute("SET work_mem = '256MB'")  # sort the batch in memory
        statement = sql.SQL(
            "COPY (SELECT {returned}, event_timestamp < {late} FROM ({chosen}) c)"
            " TO STDOUT (FORMAT csv)"
        ).format(
            returned=_returned_columns(),
            late=_late_literal(late_before),
            chosen=_chosen(tables),
        )
        chosen = _copied_rows(self._conn, statement)
        rows = chosen.filter(~pl.col("event_id").is_in(stored)) if stored else chosen
        return _ReadBack(
            chosen.height, rows, derive(rows.drop("arrived_late")) if derived else None
        )


def merge_staged(
    conn: psycopg.Connection[tuple[object, ...]],
    staged: StagedRows,
    batch_id: int,
    late_before: datetime,
    *,
    reader: StagedReader | None = None,
    derived: bool = False,
) -> MergedEvents:
    """Insert the first row of each staged event id that the store does not hold yet,
    flagged late when older than ``late_before`` (naive UTC); inside the caller's
    transaction. With a ``reader``, the inserted rows come back too (to score orders
    from), and when ``derived``, their rollup deltas and sessions."""
    tables = [p.events_table for p in staged.parts if p.events_table]
    if not tables:
        return MergedEvents(0, 0, 0, 0, (None, None), _empty_events() if reader else None)
    rows = _union(tables, (*FIELD_NAMES, *_ORIGIN))
    conn.execute("SET LOCAL work_mem = '256MB'")  # sort the batch in memory, not on disk
    counted = conn.execute(
        sql.SQL(
            "SELECT count(*), min(event_timestamp AT TIME ZONE 'UTC'),"
            " max(event_timestamp AT TIME ZONE 'UTC') FROM ({}) s"
        ).format(rows)
    ).fetchone()
    assert counted is not None
    total = int(str(counted[0]))
    if total != staged.events:
        raise StagingMismatchError(
            f"stage {staged.prefix} holds {total} valid rows; its workers staged {staged.events}"
        )
    time_range = (counted[1], counted[2])
    held = _hold_stored_ids(conn, tables)
    reading = (
        reader.start(tables, late_before, _stored_ids(conn) if held else [], derived=derived)
        if reader is not None
        else None
    )
    inserted, late = _merge_against(conn, tables, batch_id, late_before)
    distinct = inserted + held
    read = reading.result() if reading is not None else None
    if read is not None and (read.rows.height, read.distinct) != (inserted, distinct):
        raise StagingMismatchError(
            f"stage {staged.prefix}: {inserted} of {distinct} distinct rows went in;"
            f" {read.rows.height} of {read.distinct} were read back"
        )
    return MergedEvents(
        inserted=inserted,
        duplicates_in_batch=total - distinct,
        duplicates_in_store=held,
        late=late,
        time_range=time_range,  # type: ignore[arg-type]
        events=read.rows.drop("arrived_late") if read is not None else None,
        derived=read.derived if read is not None else None,
    )


def _hold_stored_ids(conn: psycopg.Connection[tuple[object, ...]], tables: list[str]) -> int:
    """Keep the batch's ids that the store holds in a temporary table for the merge;
    returns how many. A key another writer commits after this is caught by the key of
    ``event_ids`` in the merge (23505), and the loader runs the commit again."""
    return conn.execute(
        sql.SQL(
            "CREATE TEMPORARY TABLE {stored} ON COMMIT DROP AS SELECT DISTINCT s.event_id"
            " FROM ({ids}) s WHERE EXISTS (SELECT FROM event_ids k WHERE k.event_id = s.event_id)"
        ).format(stored=_STORED, ids=_union(tables, ("event_id",)))
    ).rowcount


def _stored_ids(conn: psycopg.Connection[tuple[object, ...]]) -> list[str]:
    return [
        str(row[0])
        for row in conn.execute(sql.SQL("SELECT event_id::text FROM {}").format(_STORED))
    ]


def _merge_against(
    conn: psycopg.Connection[tuple[object, ...]],
    tables: list[str],
    batch_id: int,
    late_before: datetime,
) -> tuple[int, int]:
    """Move the chosen rows whose ids the store did not hold into ``events``, streaming,
    keeping only their keys for ``event_ids`` (nothing as wide as a row is materialised).
    Returns how many rows went in and how many of those were late."""
    row = conn.execute(
        sql.SQL(
            "WITH ins AS ({insert} FROM ({chosen}) c"
            " WHERE NOT EXISTS (SELECT FROM {stored} k WHERE k.event_id = c.event_id)"
            " RETURNING event_id, event_timestamp, arrived_late),"
            " keyed AS (INSERT INTO event_ids (event_id, event_month)"
            " SELECT event_id, shopstream_event_month(event_timestamp) FROM ins)"
            " SELECT count(*), count(*) FILTER (WHERE arrived_late) FROM ins"
        ).format(
            insert=_insert_events(batch_id, late_before), chosen=_chosen(tables), stored=_STORED
        )
    ).fetchone()
    assert row is not None
    return int(str(row[0])), int(str(row[1]))


def _chosen(tables: list[str]) -> sql.Composed:
    """The first row of each id in ``tables``, by source and line (the embedded engine
    keeps the first by source and line too), in id order."""
    return sql.SQL(
        "SELECT DISTINCT ON (event_id) {fields} FROM ({rows}) s ORDER BY event_id, source, line_no"
    ).format(fields=_columns(FIELD_NAMES), rows=_union(tables, (*FIELD_NAMES, *_ORIGIN)))


def _insert_events(batch_id: int, late_before: datetime) -> sql.Composed:
    """``INSERT INTO events … SELECT …`` up to its FROM clause."""
    return sql.SQL(
        "INSERT INTO events ({fields}, batch_id, arrived_late)"
        " SELECT {fields}, {batch}, event_timestamp < {late}"
    ).format(
        fields=_columns(FIELD_NAMES), batch=sql.Literal(batch_id), late=_late_literal(late_before)
    )


def _late_literal(late_before: datetime) -> sql.Composed:
    return sql.Literal(late_before.isoformat(sep=" ")) + sql.SQL("::timestamp AT TIME ZONE 'UTC'")


def staged_months(conn: psycopg.Connection[tuple[object, ...]], staged: StagedRows) -> set[date]:
    """The UTC months of the staged events (their partitions are made before the merge)."""
    tables = [p.events_table for p in staged.parts if p.events_table]
    if not tables:
        return set()
    rows = conn.execute(
        sql.SQL("SELECT DISTINCT shopstream_event_month(event_timestamp) FROM ({}) s").format(
            _union(tables, ("event_timestamp",))
        )
    ).fetchall()
    return {row[0] for row in rows if isinstance(row[0], date)}


def move_staged_quarantine(
    conn: psycopg.Connection[tuple[object, ...]], staged: StagedRows, batch_id: int
) -> int:
    """Insert the staged quarantine rows under ``batch_id``; returns how many."""
    tables = [p.quarantine_table for p in staged.parts if p.quarantine_table]
    if not tables:
        return 0
    rest = QUARANTINE_COLUMNS[1:]
    moved = conn.execute(
        sql.SQL(
            "INSERT INTO quarantine ({columns}) SELECT {batch}, {rest} FROM ({rows}) s"
            " ORDER BY source, line_no NULLS FIRST"
        ).format(
            columns=_columns(QUARANTINE_COLUMNS),
            batch=sql.Literal(batch_id),
            rest=_columns(rest),
            rows=_union(tables, rest),
        )
    ).rowcount
    expected = sum(p.quarantine_rows for p in staged.parts)
    if moved != expected:
        raise StagingMismatchError(
            f"stage {staged.prefix} holds {moved} quarantine rows; its workers staged {expected}"
        )
    return moved


def _returned_columns() -> sql.Composed:
    """The event columns as the engines type them (text ids and JSON, epoch microseconds,
    float money)."""
    kinds = {f.name: f.kind for f in EVENT_FIELDS}
    return sql.SQL(", ").join(
        sql.SQL(_RETURNED.get(kinds[name], "{}")).format(sql.Identifier(name))
        + sql.SQL(" AS ")
        + sql.Identifier(name)
        for name in FIELD_NAMES
    )


def _copied_rows(
    conn: psycopg.Connection[tuple[object, ...]], statement: sql.Composed
) -> pl.DataFrame:
    """Event rows (:func:`_returned_columns`, then ``arrived_late``) read as CSV through
    COPY and parsed by Polars in Rust: no per-row Python."""
    payload = bytearray()
    with conn.cursor().copy(statement) as copy:
        for chunk in copy:
            payload += chunk
    if not payload:
        return _empty_events().with_columns(pl.lit(value=False).alias("arrived_late"))
    kinds = {f.name: f.kind for f in EVENT_FIELDS}
    schema = {name: _RETURNED_TYPES.get(kinds[name], pl.String()) for name in FIELD_NAMES}
    frame = pl.read_csv(
        bytes(payload), has_header=False, new_columns=[*FIELD_NAMES, "arrived_late"],
        schema_overrides={**schema, "arrived_late": pl.String()},
    )  # fmt: skip
    return frame.with_columns(
        *(pl.col(n).cast(pl.Datetime("us")) for n in FIELD_NAMES if kinds[n] == "timestamp"),
        (pl.col("arrived_late") == "t").alias("arrived_late"),
    )


def _empty_events() -> pl.DataFrame:
    return pl.DataFrame(schema=EVENT_SCHEMA)


def _union(tables: list[str], columns: tuple[str, ...]) -> sql.Composed:
    return sql.SQL(" UNION ALL ").join(
        sql.SQL("SELECT {} FROM {}").format(_columns(columns), _staged(name)) for name in tables
    )


def _columns(names: tuple[str, ...]) -> sql.Composed:
    return sql.SQL(", ").join(map(sql.Identifier, names))


def _staged(name: str) -> sql.Identifier:
    return sql.Identifier(STAGING_SCHEMA, name)
