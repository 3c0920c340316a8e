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
    event_months: int  # partitions of events: the months it holds
    open_quarantine: int
    files_rejected: int  # quarantined or rejected whole
    records_in_rejected_files: int
    awaiting_rebuild: int  # batches loaded with rollups deferred, not folded yet


def totals(conn: psycopg.Connection[Any]) -> Totals:
    row = conn.execute(
        """SELECT count(*), coalesce(sum(files), 0), coalesce(sum(rows_read), 0),
                  coalesce(sum(rows_loaded), 0),
                  coalesce(sum(duplicates_in_batch + duplicates_in_store), 0),
                  coalesce(sum(rows_quarantined), 0),
                  (SELECT count(*) FROM events),
                  (SELECT count(*) FROM pg_inherits WHERE inhparent = 'events'::regclass),
                  (SELECT count(*) FROM quarantine WHERE status = 'quarantined'),
                  (SELECT count(*) FROM ingested_files WHERE status IN ('quarantined', 'rejected')),
                  (SELECT coalesce(sum(rows_read), 0) FROM ingested_files
                    WHERE status IN ('quarantined', 'rejected')),
                  count(*) FILTER (WHERE derived_pending)
             FROM batches"""
    ).fetchone()
    assert row is not None
    return Totals(*(int(v) for v in row))


def outside_lake(conn: psycopg.Connection[Any], table_uri: str) -> tuple[int, int]:
    """Batches and events the lake table at ``table_uri`` does not hold yet."""
    row = conn.execute(
        """SELECT count(*), coalesce(sum(rows_loaded), 0) FROM batches b
            WHERE NOT EXISTS (SELECT 1 FROM lake_exports l
                               WHERE l.lake_uri = %s AND l.batch_id = b.batch_id
                                 AND l.status = 'committed')""",
        (table_uri,),
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


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


# Raw characters per row in a listing; ``quarantine show`` gives a row's stored excerpt.
QUARANTINE_LIST_RAW_CHARS = 4096


def quarantine_rows(
    conn: psycopg.Connection[Any],
    *,
    rule: str | None,
    limit: int,
    offset: int = 0,
    after: int | None = None,
    status: str = "quarantined",
    raw_chars: int = QUARANTINE_LIST_RAW_CHARS,
) -> list[dict[str, Any]]:
    """A page of quarantine rows, each with at most ``raw_chars`` of its raw content (and
    the whole record's size and hash), so a page's size is bounded whatever was stored.
    ``after`` pages by id (stable while rows arrive); ``offset`` skips rows."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            """SELECT quarantine_id, batch_id, source, line_no, scope, rules,
                      left(raw, %(chars)s) AS raw,
                      coalesce(raw_size, octet_length(raw)) AS raw_size,
                      coalesce(raw_sha256, encode(sha256(
                          coalesce(raw_bytes, convert_to(raw, 'UTF8'))), 'hex')) AS raw_sha256,
                      coalesce(raw_size, octet_length(raw)) > octet_length(left(raw, %(chars)s))
                          AS raw_truncated,
                      status
                 FROM quarantine
                WHERE status = %(status)s AND (%(rule)s::text IS NULL OR %(rule)s = ANY(rules))
                  AND (%(after)s::bigint IS NULL OR quarantine_id > %(after)s)
                ORDER BY quarantine_id LIMIT %(limit)s OFFSET %(offset)s""",
            {
                "chars": raw_chars,
                "status": status,
                "rule": rule,
                "after": after,
                "limit": limit,
                "offset": offset,
            },
        ).fetchall()


def quarantine_row(conn: psycopg.Connection[Any], quarantine_id: int) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT * FROM quarantine WHERE quarantine_id = %s", (quarantine_id,)
        ).fetchone()
