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

STAGING_SCHEMA: Final = "shopstream_staging"
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
    for (to derive rollups and score orders from); ``time_range``: of the batch's distinct
    valid rows, as the batch record keeps it."""

    inserted: int
    duplicates_in_batch: int
    duplicates_in_store: int
    late: int
    time_range: tuple[datetime | None, datetime | None]
    events: pl.DataFrame | None


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


def merge_staged(
    conn: psycopg.Connection[tuple[object, ...]],
    staged: StagedRows,
    batch_id: int,
    late_before: datetime,
    *,
    returning: bool,
) -> MergedEvents:
    """Insert the first row of each staged event id that the store does not hold yet,
    flagged late when older than ``late_before`` (naive UTC); inside the caller's
    transaction."""
    tables = [p.events_table for p in staged.parts if p.events_table]
    if not tables:
        return MergedEvents(0, 0, 0, 0, (None, None), _empty_events() if returning else None)
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
    # The first row of each id that the store does not hold; its key and the row go in.
    # A key a concurrent writer committed meanwhile stops the insert (23505) and the
    # loader runs the commit again, which then finds it stored.
    with_clause = sql.SQL(
        "WITH chosen AS (SELECT DISTINCT ON (event_id) {fields}"
        " FROM ({rows}) s ORDER BY event_id, source, line_no),"
        " fresh AS MATERIALIZED (SELECT * FROM chosen c"
        " WHERE NOT EXISTS (SELECT FROM event_ids k WHERE k.event_id = c.event_id)),"
        " keyed AS (INSERT INTO event_ids (event_id, event_month)"
        " SELECT event_id, shopstream_event_month(event_timestamp) FROM fresh)"
    ).format(fields=_columns(FIELD_NAMES), rows=rows)
    insert = sql.SQL(
        "INSERT INTO events ({fields}, batch_id, arrived_late)"
        " SELECT {fields}, {batch}, event_timestamp < {late} FROM fresh"
    ).format(
        fields=_columns(FIELD_NAMES),
        batch=sql.Literal(batch_id),
        late=sql.Literal(late_before.isoformat(sep=" "))
        + sql.SQL("::timestamp AT TIME ZONE 'UTC'"),
    )
    events = None
    if returning:
        read_back, counted_ids = _inserted_rows(conn, with_clause, insert)
        distinct = counted_ids if counted_ids is not None else _distinct_ids(conn, rows)
        inserted, late = read_back.height, int(read_back["arrived_late"].sum())
        events = read_back.drop("arrived_late")
    else:
        row = conn.execute(
            sql.SQL(
                "{}, ins AS ({} RETURNING arrived_late) SELECT (SELECT count(*) FROM chosen),"
                " count(*), count(*) FILTER (WHERE arrived_late) FROM ins"
            ).format(with_clause, insert)
        ).fetchone()
        assert row is not None
        distinct, inserted, late = (int(str(v)) for v in row)
    return MergedEvents(
        inserted=inserted,
        duplicates_in_batch=total - distinct,
        duplicates_in_store=distinct - inserted,
        late=late,
        time_range=(counted[1], counted[2]),  # type: ignore[arg-type]
        events=events,
    )


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


def _inserted_rows(
    conn: psycopg.Connection[tuple[object, ...]], with_clause: sql.Composed, insert: sql.Composed
) -> tuple[pl.DataFrame, int | None]:
    """Run ``insert`` (after its ``with_clause``, which names the batch's distinct rows
    ``chosen``) and read back the rows it inserted, as CSV through COPY (parsed by Polars in
    Rust: no per-row Python), with how many distinct ids the batch held: that count rides
    on every returned row (None when nothing went in)."""
    kinds = {f.name: f.kind for f in EVENT_FIELDS}
    returned = sql.SQL(", ").join(
        sql.SQL(_RETURNED.get(kinds[name], "{}")).format(sql.Identifier(name))
        + sql.SQL(" AS ")
        + sql.Identifier(name)
        for name in FIELD_NAMES
    )
    statement = sql.SQL(
        "COPY ({} {} RETURNING {}, arrived_late, (SELECT count(*) FROM chosen))"
        " TO STDOUT (FORMAT csv)"
    ).format(with_clause, insert, returned)
    payload = bytearray()
    with conn.cursor().copy(statement) as copy:
        for chunk in copy:
            payload += chunk
    if not payload:  # every id was stored before
        return _empty_events().with_columns(pl.lit(value=False).alias("arrived_late")), None
    schema = {name: _RETURNED_TYPES.get(kinds[name], pl.String()) for name in FIELD_NAMES}
    frame = pl.read_csv(
        bytes(payload), has_header=False,
        new_columns=[*FIELD_NAMES, "arrived_late", "distinct_ids"],
        schema_overrides={**schema, "arrived_late": pl.String(), "distinct_ids": pl.Int64()},
    )  # fmt: skip
    distinct = int(frame["distinct_ids"][0])
    rows = frame.drop("distinct_ids").with_columns(
        *(pl.col(n).cast(pl.Datetime("us")) for n in FIELD_NAMES if kinds[n] == "timestamp"),
        (pl.col("arrived_late") == "t").alias("arrived_late"),
    )
    return rows, distinct


def _distinct_ids(conn: psycopg.Connection[tuple[object, ...]], rows: sql.Composed) -> int:
    row = conn.execute(
        sql.SQL("SELECT count(DISTINCT event_id) FROM ({}) s").format(rows)
    ).fetchone()
    assert row is not None
    return int(str(row[0]))


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
