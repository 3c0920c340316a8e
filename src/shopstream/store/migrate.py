"""Versioned, idempotent schema migrations: ``store/migrations/NNNN_name.sql``."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import resources

import psycopg

from shopstream.store.roles import ensure_roles

log = logging.getLogger(__name__)
_LOCK_KEY = 0x5350_5354  # "SPST": one migrator at a time


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def available_migrations() -> list[Migration]:
    folder = resources.files("shopstream.store") / "migrations"
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            number, _, rest = entry.name.partition("_")
            found.append(Migration(int(number), rest.removesuffix(".sql"), entry.read_text()))
    return sorted(found, key=lambda m: m.version)


def migrate(conn: psycopg.Connection[tuple[object, ...]]) -> list[Migration]:
    """Apply pending migrations, each in its own transaction; returns those applied."""
    applied_now: list[Migration] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version    integer PRIMARY KEY,
                   name       text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
        for migration in available_migrations():
            if migration.version in done:
                continue
            with conn.transaction():
                conn.execute(migration.sql.encode())
                conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                    (migration.version, migration.name),
                )
            log.info("applied migration %04d_%s", migration.version, migration.name)
            applied_now.append(migration)
        ensure_roles(conn)
    return applied_now


def pending_migrations(conn: psycopg.Connection[tuple[object, ...]]) -> list[Migration]:
    exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    done: set[object] = set()
    if exists and exists[0]:
        done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
    return [m for m in available_migrations() if m.version not in done]
