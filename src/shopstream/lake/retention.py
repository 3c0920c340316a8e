"""Retention: what leaves PostgreSQL, and only once the lake verifiably holds it.

Policies are settings (``SHOPSTREAM_RETENTION_*``); cut-offs fall on UTC midnights so whole
days leave at once. Applying them goes:

0. Refuse, deleting nothing, while events past the cut-off are in batches loaded with
   rollups deferred: deleted before a rebuild folds them, the derived tables never would.
1. Export: the lake takes every committed batch it lacks (events and quarantine).
2. Verify, before anything is deleted: every event (quarantined record) past its cut-off
   belongs to a batch the ledger shows committed to this lake, and for every day past it
   the lake holds at least as many rows as PostgreSQL. Either failing deletes nothing.
3. Delete events: a month wholly past the cut-off by dropping its partition of ``events``
   (nothing rewritten, no dead rows left), the days of the month the cut-off falls in
   one by one (one transaction each, so none grows with the history).
4. Drop quarantined records' raw content (the rule, fields, size and SHA-256 stay; such a
   record can no longer be replayed, its content is in the lake).
5. Delete job runs, quality results and resolved alerts past the log policy, and minute
   rollups past theirs. Batch records stay: they are the exactly-once ledger.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
from psycopg import sql

from shopstream.lake.errors import ArchiveIncompleteError, UnfoldedEventsError
from shopstream.lake.export import SPECS, ExportOutcome, TableSpec, export_table
from shopstream.lake.location import LAKE_TABLES, Lake
from shopstream.settings import Settings
from shopstream.store.partitions import drop_event_month

log = logging.getLogger(__name__)

_LOG_TABLES: Final = (
    ("pipeline_execution_logs", "started_at", ""),
    ("data_quality_logs", "checked_at", ""),
    ("alerts", "resolved_at", " AND resolved_at IS NOT NULL"),
)


@dataclass(frozen=True, slots=True)
class Cutoffs:
    """Rows older than these leave (None: kept)."""

    events: datetime | None
    quarantine_raw: datetime | None
    logs: datetime
    minute_rollups: datetime

    @classmethod
    def of(cls, settings: Settings, now: datetime) -> Cutoffs:
        def policy(days: int | None) -> datetime | None:
            return None if days is None else settings.days_before(days, now)

        return cls(
            events=policy(settings.retention_events_days),
            quarantine_raw=policy(settings.retention_quarantine_raw_days),
            logs=settings.days_before(settings.retention_logs_days, now),
            minute_rollups=settings.days_before(settings.retention_minute_rollups_days, now),
        )


@dataclass(frozen=True, slots=True)
class RetentionOutcome:
    dry_run: bool
    cutoffs: Cutoffs
    exported: tuple[ExportOutcome, ...]
    removed: dict[str, int] = field(default_factory=dict)  # table: rows deleted or cleared
    days: tuple[date, ...] = ()  # days of events that left PostgreSQL


def apply_retention(
    conn: psycopg.Connection[Any],
    url: str,
    lake: Lake,
    settings: Settings,
    *,
    now: datetime,
    dry_run: bool = False,
) -> RetentionOutcome:
    """Apply the policies; ``dry_run`` counts what would leave and exports nothing."""
    cutoffs = Cutoffs.of(settings, now)
    if cutoffs.events is not None and not dry_run:  # Step 0
        _refuse_unfolded(conn, cutoffs.events)
    exported: tuple[ExportOutcome, ...] = ()
    if not dry_run:  # Step 1
        exported = tuple(
            export_table(conn, url, lake, name, max_rows=settings.lake_export_rows)
            for name in LAKE_TABLES
        )
    removed: dict[str, int] = {}
    days: list[date] = []
    if cutoffs.events is not None:
        per_day = _verified(conn, lake, SPECS["events"], cutoffs.events, dry_run)  # Step 2
        days = sorted(per_day)
        removed["events"] = (
            sum(per_day.values())
            if dry_run
            else _delete_events(conn, lake, per_day, cutoffs.events)  # Step 3
        )
    if cutoffs.quarantine_raw is not None:
        _verified(conn, lake, SPECS["quarantine"], cutoffs.quarantine_raw, dry_run)
        removed["quarantine_raw"] = _clear_raw(conn, cutoffs.quarantine_raw, dry_run)  # Step 4
    for table, column, extra in _LOG_TABLES:  # Step 5
        removed[table] = _delete_before(conn, table, column, cutoffs.logs, extra, dry_run)
    removed["realtime_metrics"] = _delete_before(
        conn, "realtime_metrics", "window_start", cutoffs.minute_rollups, "", dry_run
    )
    return RetentionOutcome(dry_run, cutoffs, exported, removed, tuple(days))


def _refuse_unfolded(conn: psycopg.Connection[Any], cutoff: datetime) -> None:
    """Events of batches loaded with rollups deferred stay until a rebuild has folded them:
    deleted first, the derived tables would never count them."""
    row = conn.execute(
        """SELECT count(*) FROM events
            WHERE event_timestamp < %s
              AND batch_id IN (SELECT batch_id FROM batches WHERE derived_pending)""",
        (cutoff,),
    ).fetchone()
    if row and row[0]:
        raise UnfoldedEventsError(
            f"{row[0]:,} events before {cutoff:%Y-%m-%d} are in batches loaded with rollups"
            " deferred that no rebuild has folded yet: nothing deleted (run `shopstream"
            " backfill` again, or `shopstream rebuild`, first)"
        )


def _verified(
    conn: psycopg.Connection[Any], lake: Lake, spec: TableSpec, cutoff: datetime, dry_run: bool
) -> dict[date, int]:
    """PostgreSQL's rows per day before ``cutoff``, once the lake is shown to hold them."""
    uri = lake.table_uri(spec.name)
    rows = conn.execute(
        sql.SQL(
            """SELECT ({dated} AT TIME ZONE 'UTC')::date AS day, count(*),
                      count(*) FILTER (WHERE NOT EXISTS (
                          SELECT 1 FROM lake_exports l
                           WHERE l.lake_uri = %s AND l.lake_table = %s
                             AND l.batch_id = t.batch_id AND l.status = 'committed'))
                 FROM {table} t WHERE {dated} < %s GROUP BY 1"""
        ).format(dated=sql.Identifier(spec.dated_by), table=sql.Identifier(spec.name)),
        (uri, spec.name, cutoff),
    ).fetchall()
    in_store = {day: int(n) for day, n, _ in rows}
    unarchived = sum(int(missing) for _, _, missing in rows)
    if dry_run or not in_store:
        return in_store
    if unarchived:
        raise ArchiveIncompleteError(
            f"{unarchived} {spec.name} rows before {cutoff:%Y-%m-%d} are in batches the lake"
            f" at {uri} does not hold: nothing deleted"
        )
    in_lake = _lake_days(lake, spec, min(in_store), cutoff)
    short = {d: (n, in_lake.get(d, 0)) for d, n in in_store.items() if in_lake.get(d, 0) < n}
    if short:
        day, (have, held) = min(short.items())
        raise ArchiveIncompleteError(
            f"the lake holds fewer {spec.name} rows than PostgreSQL for {len(short)} day(s)"
            f" (first {day}: {held} < {have}): nothing deleted"
        )
    return in_store


def _lake_days(lake: Lake, spec: TableSpec, first: date, cutoff: datetime) -> dict[date, int]:
    """Rows per day the lake holds in [first, cutoff), read from the partition column."""
    table = lake.open(spec.name)
    if table is None:
        return {}
    days = table.to_pyarrow_table(
        columns=[spec.partition_column],
        filters=[
            (spec.partition_column, ">=", first),
            (spec.partition_column, "<", cutoff.date()),
        ],
    ).column(spec.partition_column)
    counts = pc.value_counts(pc.cast(days, pa.date32()))
    return {item["values"].as_py(): int(item["counts"].as_py()) for item in counts}


def _delete_events(
    conn: psycopg.Connection[Any], lake: Lake, per_day: dict[date, int], cutoff: datetime
) -> int:
    """A month wholly before the cut-off leaves by dropping its partition; the days of a
    month the cut-off falls in leave one by one. Each leaves in one transaction that also
    records its days as archived (a rebuild then reads them from the lake)."""
    deleted = 0
    by_month: dict[date, list[date]] = {}
    for day in sorted(per_day):
        by_month.setdefault(day.replace(day=1), []).append(day)
    for month, days in by_month.items():
        if _month_after(month) <= cutoff.date():
            with conn.transaction():
                removed = drop_event_month(conn, month)
                _record_archived(conn, lake, {day: per_day[day] for day in days})
            deleted += removed
            log.info("retention: %d events of %s left PostgreSQL with their partition"
                     " (held by the lake)", removed, f"{month:%Y-%m}")  # fmt: skip
            continue
        for day in days:
            start = datetime.combine(day, datetime.min.time(), UTC)
            with conn.transaction():
                cursor = conn.execute(
                    "DELETE FROM events WHERE event_timestamp >= %s AND event_timestamp < %s",
                    (start, start + timedelta(days=1)),
                )
                _record_archived(conn, lake, {day: cursor.rowcount})
            deleted += cursor.rowcount
            log.info("retention: %d events of %s left PostgreSQL (held by the lake)",
                     cursor.rowcount, day)  # fmt: skip
    return deleted


def _month_after(month: date) -> date:
    return (month + timedelta(days=32)).replace(day=1)


def _record_archived(conn: psycopg.Connection[Any], lake: Lake, days: dict[date, int]) -> None:
    with conn.cursor() as cursor:
        cursor.executemany(
            """INSERT INTO archived_event_days (day, events, lake_root) VALUES (%s, %s, %s)
               ON CONFLICT (day) DO UPDATE
               SET events = archived_event_days.events + excluded.events,
                   removed_at = now()""",
            [(day, events, lake.root) for day, events in days.items()],
        )


def _clear_raw(conn: psycopg.Connection[Any], cutoff: datetime, dry_run: bool) -> int:
    if dry_run:
        row = conn.execute(
            """SELECT count(*) FROM quarantine
                WHERE created_at < %s AND (raw <> '' OR raw_bytes IS NOT NULL)""",
            (cutoff,),
        ).fetchone()
        return int(row[0]) if row else 0
    with conn.transaction():
        cursor = conn.execute(
            """WITH content AS (
                   SELECT quarantine_id,
                          coalesce(raw_bytes, convert_to(raw, 'UTF8')) AS bytes
                     FROM quarantine
                    WHERE created_at < %s AND (raw <> '' OR raw_bytes IS NOT NULL))
               UPDATE quarantine q
                  SET raw_size = coalesce(q.raw_size, octet_length(c.bytes)),
                      raw_sha256 = coalesce(q.raw_sha256, encode(sha256(c.bytes), 'hex')),
                      raw = '', raw_bytes = NULL
                 FROM content c WHERE q.quarantine_id = c.quarantine_id""",
            (cutoff,),
        )
    return cursor.rowcount


def _delete_before(
    conn: psycopg.Connection[Any],
    table: str,
    column: str,
    cutoff: datetime,
    extra: str,
    dry_run: bool,
) -> int:
    where = sql.SQL("{column} < %s{extra}").format(
        column=sql.Identifier(column), extra=sql.SQL(extra)
    )
    name = sql.Identifier(table)
    if dry_run:
        query = sql.SQL("SELECT count(*) FROM {table} WHERE {where}")
        row = conn.execute(query.format(table=name, where=where), (cutoff,)).fetchone()
        return int(row[0]) if row else 0
    with conn.transaction():
        query = sql.SQL("DELETE FROM {table} WHERE {where}")
        return conn.execute(query.format(table=name, where=where), (cutoff,)).rowcount
