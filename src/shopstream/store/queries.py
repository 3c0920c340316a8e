"""Read-only views of the pipeline's own records, for `status` and `quarantine`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import dict_row


@dataclass(frozen=True, slots=True)
class Totals:
    batches: int
    files: int
    rows_read: int
    rows_loaded: int
    duplicates: int
    rows_quarantined: int
    events_stored: int
    open_quarantine: int


def totals(conn: psycopg.Connection[Any]) -> Totals:
    row = conn.execute(
        """SELECT count(*), coalesce(sum(files), 0), coalesce(sum(rows_read), 0),
                  coalesce(sum(rows_loaded), 0),
                  coalesce(sum(duplicates_in_batch + duplicates_in_store), 0),
                  coalesce(sum(rows_quarantined), 0),
                  (SELECT count(*) FROM events),
                  (SELECT count(*) FROM quarantine WHERE status = 'quarantined')
             FROM batches"""
    ).fetchone()
    assert row is not None
    return Totals(*(int(v) for v in row))


def recent_batches(conn: psycopg.Connection[Any], limit: int = 10) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            """SELECT batch_id, engine, committed_at, files, rows_read, rows_loaded,
                      duplicates_in_batch + duplicates_in_store AS duplicates,
                      rows_quarantined, quarantined_by_rule, round(load_ms::numeric, 1) AS load_ms,
                      round(parse_ms::numeric, 1) AS parse_ms, source_lag
                 FROM batches ORDER BY batch_id DESC LIMIT %s""",
            (limit,),
        ).fetchall()


def stream_positions(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    """Per consumer group and partition: the stored offset and the lag when last read."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            """SELECT consumer_group, topic, partition, next_offset, high_watermark,
                      greatest(high_watermark - next_offset, 0) AS lag, batch_id, updated_at
                 FROM source_offsets ORDER BY consumer_group, topic, partition"""
        ).fetchall()


def quarantine_by_rule(conn: psycopg.Connection[Any]) -> list[tuple[str, int]]:
    rows = conn.execute(
        """SELECT rule, count(*) FROM quarantine, unnest(rules) AS rule
            WHERE status = 'quarantined' GROUP BY rule ORDER BY count(*) DESC, rule"""
    ).fetchall()
    return [(str(rule), int(count)) for rule, count in rows]


def quarantine_rows(
    conn: psycopg.Connection[Any],
    *,
    rule: str | None,
    limit: int,
    offset: int = 0,
    status: str = "quarantined",
) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            """SELECT quarantine_id, batch_id, source, line_no, scope, rules, raw, status
                 FROM quarantine
                WHERE status = %s AND (%s::text IS NULL OR %s = ANY(rules))
                ORDER BY quarantine_id LIMIT %s OFFSET %s""",
            (status, rule, rule, limit, offset),
        ).fetchall()


def quarantine_row(conn: psycopg.Connection[Any], quarantine_id: int) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT * FROM quarantine WHERE quarantine_id = %s", (quarantine_id,)
        ).fetchone()
