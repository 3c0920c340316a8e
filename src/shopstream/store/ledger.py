"""Reads of the ``ingested_files`` ledger that sources make outside a batch transaction."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import LiteralString

import psycopg

from shopstream.contract import FileOutcome, FileProgress
from shopstream.store.connection import connect

log = logging.getLogger(__name__)


def files_held(
    conn: psycopg.Connection[tuple[object, ...]], files: list[FileOutcome]
) -> frozenset[tuple[str, str]]:
    """Which of ``files`` the ledger holds, as (path, content hash); read after a failed
    transaction rolled back, in a transaction of its own."""
    rows = conn.execute(
        "SELECT path, content_hash FROM ingested_files"
        " WHERE (path, content_hash) IN (SELECT * FROM unnest(%s::text[], %s::text[]))",
        ([f.path for f in files], [f.content_hash for f in files]),
    ).fetchall()
    conn.commit()
    return frozenset((str(path), str(digest)) for path, digest in rows)


def paths_held(url: str, paths: list[str]) -> set[str]:
    """Which of ``paths`` the ledger holds, whatever their content."""
    if not paths:
        return set()
    with connect(url) as conn:
        rows = conn.execute(
            "SELECT path FROM ingested_files WHERE path = ANY(%s)", (paths,)
        ).fetchall()
    return {str(row[0]) for row in rows}


def known_files(url: str, directory: Path) -> dict[str, set[str]]:
    """Path -> content hashes the ledger holds for files under ``directory``."""
    known: dict[str, set[str]] = {}
    with connect(url) as conn:
        for path, digest in conn.execute(
            "SELECT path, content_hash FROM ingested_files WHERE starts_with(path, %s)",
            (f"{directory}/",),
        ):
            known.setdefault(str(path), set()).add(str(digest))
    return known


class LedgerCheck:
    """What a file source asks the ledger between batches, on a connection of its own:
    does it hold exactly this path and content (asked right before archiving or deleting
    a file; any failure answers no, so the file stays and is looked at again later), and
    where did the loading of a large file stop."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None
        self._lock = threading.Lock()

    def holds(self, path: str, content_hash: str) -> bool:
        try:
            row = self._query(
                "SELECT 1 FROM ingested_files WHERE path = %s AND content_hash = %s",
                (path, content_hash),
            )
        except psycopg.Error as error:
            log.warning("cannot check the ledger for %s (%s); leaving it", path, error)
            return False
        return row is not None

    def progress(self, path: str, content_hash: str) -> FileProgress | None:
        """The stored position of a file loaded in pieces (None: not begun). Errors
        propagate: reading the file from its start would repeat committed pieces."""
        row = self._query(
            "SELECT next_offset, next_line, pieces FROM file_progress"
            " WHERE path = %s AND content_hash = %s",
            (path, content_hash),
        )
        if row is None:
            return None
        return FileProgress(*(int(str(value)) for value in row))

    def _query(self, query: LiteralString, params: tuple[object, ...]) -> tuple[object, ...] | None:
        with self._lock:
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = connect(self._url)
                    self._conn.autocommit = True
                return self._conn.execute(query, params).fetchone()
            except psycopg.Error:
                self.close()
                raise

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
