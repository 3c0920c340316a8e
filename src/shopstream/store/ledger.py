"""Reads of the ``ingested_files`` ledger that sources make outside a batch transaction."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import psycopg

from shopstream.store.connection import connect

log = logging.getLogger(__name__)


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
    """Answers "does the ledger hold exactly this path and content?" right before a source
    archives or deletes a file. Any failure answers no: the file stays where it is and is
    looked at again on a later poll."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None
        self._lock = threading.Lock()

    def __call__(self, path: str, content_hash: str) -> bool:
        with self._lock:
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = connect(self._url)
                    self._conn.autocommit = True
                row = self._conn.execute(
                    "SELECT 1 FROM ingested_files WHERE path = %s AND content_hash = %s",
                    (path, content_hash),
                ).fetchone()
            except psycopg.Error as error:
                log.warning("cannot check the ledger for %s (%s); leaving it", path, error)
                self.close()
                return False
            return row is not None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
