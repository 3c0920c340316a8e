"""``shopstream backup``: a consistent, parallel ``pg_dump`` of the ShopStream database with
a manifest, and its restore into an empty database.

A dump in directory format is taken from one snapshot (``pg_dump`` exports it to its
parallel workers), so events, rollups, the ledger and Kafka offsets agree with each other:
after a restore the runner skips exactly the input committed before the backup. The manifest
records what to check a restore against: versions, migration level and every table's rows.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Final

import psycopg
from psycopg import sql

from shopstream.errors import TerminalError
from shopstream.store.server import EmbeddedPostgres

MANIFEST: Final = "manifest.json"
DUMP: Final = "dump"
JOBS: Final = 2  # parallel dump and restore workers


class BackupError(TerminalError):
    """A backup or restore that cannot go on; the message says why."""


@dataclass(frozen=True, slots=True)
class Manifest:
    created_at: str
    shopstream_version: str
    server_version: str
    migration: int
    tables: dict[str, int]
    kind: str = "dump"  # "base": a physical base backup for point-in-time recovery
    wal_archive: str | None = None  # base: where the server archives its WAL

    @classmethod
    def read(cls, folder: Path) -> Manifest:
        try:
            return cls(**json.loads((folder / MANIFEST).read_text()))
        except (OSError, ValueError, TypeError) as error:
            raise BackupError(f"{folder} holds no readable ShopStream backup ({error})") from error


def _binary(name: str, pg_bin: Path | None) -> str:
    """``pg_dump``/``pg_restore`` matching the embedded server when there is one."""
    import importlib.util

    candidates = [pg_bin] if pg_bin else []
    bundled = importlib.util.find_spec("pgserver")
    if bundled is not None and bundled.origin is not None:
        candidates.append(Path(bundled.origin).parent / "pginstall" / "bin")
    for folder in candidates:
        if (folder / name).exists():
            return str(folder / name)
    found = shutil.which(name)
    if found is None:
        raise BackupError(f"{name} not found: install PostgreSQL's client tools")
    return found


def table_rows(conn: psycopg.Connection[Any]) -> dict[str, int]:
    """Exact row counts of every table of the schema (what a restore must hold); a
    partitioned table counts its partitions' rows."""
    names = [
        str(row[0])
        for row in conn.execute(
            """SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')
                  AND NOT c.relispartition AND c.relpersistence = 'p' ORDER BY 1"""
        ).fetchall()
    ]
    counts = {}
    for name in names:
        row = conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(name))
        ).fetchone()
        counts[name] = int(row[0]) if row else 0
    return counts


def create(url: str, folder: Path, pg_bin: Path | None = None) -> Manifest:
    """Dump the database into ``folder`` (which must not exist yet) and write its manifest.
    The counts are taken in the dump's own snapshot, so they describe exactly the dump."""
    if folder.exists():
        raise BackupError(f"{folder} exists already: a backup goes into a new folder")
    folder.mkdir(parents=True)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        row = conn.execute("SELECT pg_export_snapshot(), current_setting('server_version'),"
                           " (SELECT max(version) FROM schema_migrations)").fetchone()  # fmt: skip
        assert row is not None
        snapshot, server_version, migration = row
        tables = table_rows(conn)
        done = subprocess.run(
            [_binary("pg_dump", pg_bin), "--format=directory", f"--jobs={JOBS}",
             f"--snapshot={snapshot}", "--no-owner", "--no-privileges",
             f"--file={folder / DUMP}", f"--dbname={url}"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        conn.execute("ROLLBACK")
    if done.returncode != 0:
        raise BackupError(f"pg_dump failed: {done.stderr.strip()[-2000:]}")
    manifest = Manifest(
        created_at=datetime.now(UTC).isoformat(),
        shopstream_version=metadata.version("shopstream"),
        server_version=str(server_version),
        migration=int(migration or 0),
        tables=tables,
    )
    (folder / MANIFEST).write_text(json.dumps(asdict(manifest), indent=2) + "\n")
    return manifest


def restore(url: str, folder: Path, pg_bin: Path | None = None) -> Manifest:
    """Restore ``folder`` into the empty database at ``url``; every table's rows are
    checked against the manifest."""
    manifest = Manifest.read(folder)
    with psycopg.connect(url) as conn:
        present = table_rows(conn)
    if present:
        raise BackupError(
            f"the target database is not empty ({len(present)} tables): restore into a new one"
        )
    done = subprocess.run(
        [_binary("pg_restore", pg_bin), f"--jobs={JOBS}", "--no-owner", "--no-privileges",
         "--exit-on-error", f"--dbname={url}", str(folder / DUMP)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise BackupError(f"pg_restore failed: {done.stderr.strip()[-2000:]}")
    with psycopg.connect(url) as conn:
        restored = table_rows(conn)
    wrong = {t: (n, restored.get(t)) for t, n in manifest.tables.items() if restored.get(t) != n}
    if wrong:
        raise BackupError(f"restored row counts differ from the manifest: {wrong}")
    return manifest


def create_base(server: EmbeddedPostgres, url: str, folder: Path) -> Manifest:
    """A physical base backup of the embedded server, for recovery to any later moment the
    WAL archive covers. The counts are those of the moment the backup started."""
    if server.wal_archive is None:
        raise BackupError(
            "a base backup needs the WAL archive: set SHOPSTREAM_WAL_ARCHIVE (and restart the"
            " embedded server) first"
        )
    if folder.exists():
        raise BackupError(f"{folder} exists already: a backup goes into a new folder")
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT current_setting('server_version'),"
                           " (SELECT max(version) FROM schema_migrations)").fetchone()  # fmt: skip
        assert row is not None
        tables = table_rows(conn)
    folder.mkdir(parents=True)
    server.base_backup(folder)
    manifest = Manifest(
        created_at=datetime.now(UTC).isoformat(),
        shopstream_version=metadata.version("shopstream"),
        server_version=str(row[0]),
        migration=int(row[1] or 0),
        tables=tables,
        kind="base",
        wal_archive=str(server.wal_archive),
    )
    (folder / MANIFEST).write_text(json.dumps(asdict(manifest), indent=2) + "\n")
    return manifest


def recover(
    server: EmbeddedPostgres, folder: Path, until: datetime | None, archive: Path | None
) -> Manifest:
    """Recover a new embedded server from the base backup in ``folder``, rolled forward
    through the WAL archive to ``until`` (None: as far as the archive goes)."""
    manifest = Manifest.read(folder)
    if manifest.kind != "base":
        raise BackupError(f"{folder} is a dump: --until needs a base backup (create --base)")
    source = archive or (Path(manifest.wal_archive) if manifest.wal_archive else None)
    if source is None or not source.is_dir():
        raise BackupError(f"the WAL archive {source} is not there")
    if until is not None and until < datetime.fromisoformat(manifest.created_at):
        raise BackupError(f"{until.isoformat()} is before the base backup ({manifest.created_at})")
    server.recover(folder, source, until)
    return manifest


def listing(root: Path) -> list[tuple[Path, Manifest]]:
    """The backups directly under ``root``, oldest first."""
    found = []
    for folder in sorted(p for p in root.iterdir() if (p / MANIFEST).exists()):
        found.append((folder, Manifest.read(folder)))
    return sorted(found, key=lambda item: item[1].created_at)
