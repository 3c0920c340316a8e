"""Run quarantined rows through the current rules again, after data or rules were fixed.

A replay is an ordinary, fully accounted batch: rows that pass now are loaded, rows that
still fail are quarantined again under today's rules, and the replayed quarantine rows
are closed (``status = 'replayed'``) in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import psycopg
from psycopg.rows import dict_row

from shopstream.contract import IncomingFile, ParsedBatch, ReplayOrigin
from shopstream.parse.batch import build_batch
from shopstream.parse.mapping import NO_CHOICE, MappingChoice
from shopstream.settings import Settings
from shopstream.store.connection import connect
from shopstream.store.loader import LoadOutcome


@dataclass(frozen=True, slots=True)
class ReplayInput:
    """Synthetic files rebuilt from quarantine rows, each knowing where its rows came from."""

    files: list[IncomingFile]
    quarantine_ids: list[int]


def select_for_replay(
    conn: psycopg.Connection[Any], *, rule: str | None, ids: list[int] | None, limit: int
) -> ReplayInput:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            """SELECT quarantine_id, source, line_no, scope, raw, raw_bytes, format, header
                 FROM quarantine
                WHERE status = 'quarantined'
                  -- an excerpt of a longer record cannot be replayed (it stays quarantined)
                  AND (raw_size IS NULL
                       OR raw_size <= octet_length(coalesce(raw_bytes, convert_to(raw, 'UTF8'))))
                  AND (%s::text IS NULL OR %s = ANY(rules))
                  AND (%s::bigint[] IS NULL OR quarantine_id = ANY(%s))
                ORDER BY quarantine_id LIMIT %s""",
            (rule, rule, ids, ids, limit),
        ).fetchall()
    files: list[IncomingFile] = []
    groups: dict[tuple[str, str | None], list[dict[str, Any]]] = {}
    for row in rows:
        if row["scope"] == "file":
            path = f"replay:{row['quarantine_id']}:{row['source'].rsplit('/', 1)[-1]}"
            whole = ReplayOrigin(lines={}, source=row["source"])
            files.append(IncomingFile(path, bytes(row["raw_bytes"] or b""), path, came_from=whole))
            continue
        groups.setdefault((row["format"] or "canonical", row["header"]), []).append(row)
    for number, ((_, header), members) in enumerate(groups.items()):
        # A CSV row keeps its file's header; a JSON record stands alone.
        suffix = "csv" if header is not None else "jsonl"
        path = f"replay:{members[0]['quarantine_id']}-{number}.{suffix}"
        lines = [bytes(m["raw_bytes"]) if m["raw_bytes"] else m["raw"].encode() for m in members]
        first = 1
        if header is not None:
            lines.insert(0, header.encode())
            first = 2
        origin = ReplayOrigin(
            lines={first + n: (m["source"], m["line_no"]) for n, m in enumerate(members)},
            source=members[0]["source"],
        )
        files.append(IncomingFile(path, b"\n".join(lines) + b"\n", path, came_from=origin))
    return ReplayInput(files, [int(r["quarantine_id"]) for r in rows])


def build_replay_batch(
    replay: ReplayInput, predicates: dict[str, str], choice: MappingChoice = NO_CHOICE
) -> ParsedBatch:
    """A replay batch: its rows name where they were first read (see ``ReplayOrigin``)."""
    built = build_batch(
        replay.files, source="quarantine replay", predicates=predicates, choice=choice
    )
    return replace(built, engine="replay", replayed_quarantine_ids=replay.quarantine_ids)


def replay_quarantine(
    url: str,
    settings: Settings,
    *,
    rule: str | None,
    ids: list[int] | None,
    limit: int,
    choice: MappingChoice = NO_CHOICE,
) -> LoadOutcome | None:
    """Select, rebuild and load one replay batch; None when nothing matched. The outcome
    is ``already_committed`` when a concurrent replay closed some of the rows first (then
    nothing changed)."""
    from shopstream.store.loader import Loader
    from shopstream.validation.current import current_rules

    with connect(url) as conn:
        replay = select_for_replay(conn, rule=rule, ids=ids, limit=limit)
    if not replay.quarantine_ids:
        return None
    batch = build_replay_batch(replay, current_rules(settings), choice)
    loader = Loader.from_settings(url, settings)
    try:
        return loader.load(batch)
    finally:
        loader.close()
