"""Least privilege: who may do what in the ShopStream schema, defined once, as data.

Three roles, none a superuser:
- ``shopstream_owner`` owns the schema and runs migrations;
- ``shopstream_ingest`` (runner, batch jobs, quarantine replay) reads and writes the
  pipeline's tables, and nothing about API keys;
- ``shopstream_api`` (the API and dashboard) reads, and writes only API keys and the rate
  buckets; it cannot write events or read server files.

Migrations create the ingest and API roles (NOLOGIN: deployments grant them to their
login roles) when the migrating user may create roles, and re-apply the grants after
every migration, so a new table is covered at once. The embedded server goes further: it
makes all three login roles with passwords of its own and connects each process as the
role it needs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, Literal

import psycopg
from psycopg import errors, sql

log = logging.getLogger(__name__)

Purpose = Literal["owner", "ingest", "api"]


class DatabaseRole(StrEnum):
    OWNER = "shopstream_owner"
    INGEST = "shopstream_ingest"
    API = "shopstream_api"


ROLE_FOR: Final[dict[Purpose, DatabaseRole]] = {
    "owner": DatabaseRole.OWNER,
    "ingest": DatabaseRole.INGEST,
    "api": DatabaseRole.API,
}

# Tables only the API writes; the ingest role has no business with them.
_API_TABLES: Final[dict[str, str]] = {
    "api_keys": "SELECT, INSERT, UPDATE",
    "api_rate_buckets": "SELECT, INSERT, UPDATE, DELETE",
}
# Tables both write: the loader opens fraud alerts, analysts review them through the API.
_SHARED_TABLES: Final[dict[str, str]] = {"fraud_alerts": "SELECT, UPDATE"}
_INGEST_TABLE_RIGHTS: Final = "SELECT, INSERT, UPDATE, DELETE"
# What the ingest role runs as the owner: making and dropping months of events (0026).
_INGEST_FUNCTIONS: Final = (
    "shopstream_add_event_months(date[])",
    "shopstream_drop_event_month(date)",
)
# Where Spark executors create their per-batch staging tables (migration 0024).
_STAGING_SCHEMA: Final = "shopstream_staging"


@dataclass(frozen=True, slots=True)
class RoleReport:
    role: str
    exists: bool
    can_login: bool
    superuser: bool
    tables_writable: int
    tables_readable: int


def grant_statements(schema: str = "public") -> list[sql.Composed]:
    """The grants for the ingest and API roles on every table and sequence of ``schema``;
    generic, so they can also be printed for an external database's administrator."""
    ingest, api = sql.Identifier(DatabaseRole.INGEST), sql.Identifier(DatabaseRole.API)
    where = sql.Identifier(schema)
    statements = [
        sql.SQL("GRANT USAGE ON SCHEMA {} TO {}, {}").format(where, ingest, api),
        sql.SQL("GRANT {} ON ALL TABLES IN SCHEMA {} TO {}").format(
            sql.SQL(_INGEST_TABLE_RIGHTS), where, ingest
        ),
        sql.SQL("GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA {} TO {}").format(
            where, ingest
        ),
        sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(where, api),
        sql.SQL("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {} TO {}").format(where, api),
    ]
    statements.append(
        sql.SQL("GRANT USAGE, CREATE ON SCHEMA {} TO {}").format(
            sql.Identifier(_STAGING_SCHEMA), ingest
        )
    )
    for function in _INGEST_FUNCTIONS:
        statements.append(
            sql.SQL("GRANT EXECUTE ON FUNCTION {}.{} TO {}").format(
                where, sql.SQL(function), ingest
            )
        )
    for table, rights in _API_TABLES.items():
        target = sql.Identifier(schema, table)
        statements.append(sql.SQL("REVOKE ALL ON {} FROM {}").format(target, ingest))
        statements.append(sql.SQL("GRANT {} ON {} TO {}").format(sql.SQL(rights), target, api))
    for table, rights in _SHARED_TABLES.items():
        target = sql.Identifier(schema, table)
        statements.append(sql.SQL("GRANT {} ON {} TO {}").format(sql.SQL(rights), target, api))
    return statements


def ensure_roles(conn: psycopg.Connection[Any]) -> None:
    """Create the NOLOGIN ingest and API roles if missing and allowed, then grant them
    their rights on the current tables (idempotent; runs after every migration)."""
    missing = [r for r in (DatabaseRole.INGEST, DatabaseRole.API) if not _exists(conn, r)]
    if missing and _may_create_roles(conn):
        for role in missing:
            try:
                with conn.transaction():
                    conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
            except errors.DuplicateObject:
                pass  # another database of this cluster created it meanwhile
    if not all(_exists(conn, r) for r in (DatabaseRole.INGEST, DatabaseRole.API)):
        log.warning(
            "roles %s and %s are missing and this user may not create them; an administrator"
            " can (see `shopstream db roles --sql`)",
            DatabaseRole.INGEST,
            DatabaseRole.API,
        )
        return
    if _grants_complete(conn):
        return
    with conn.transaction():
        for statement in grant_statements():
            conn.execute(statement)


def _grants_complete(conn: psycopg.Connection[Any]) -> bool:
    """Every table is readable by the API role and (but the API's own) writable by the
    ingest role: nothing to grant, so no catalog row is rewritten on every start."""
    row = conn.execute(
        """SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
              AND (NOT has_table_privilege(%s, c.oid, 'SELECT')
                   OR (NOT c.relname = ANY(%s)
                       AND NOT has_table_privilege(%s, c.oid, 'INSERT')))""",
        (DatabaseRole.API.value, list(_API_TABLES), DatabaseRole.INGEST.value),
    ).fetchone()
    staging = conn.execute(
        "SELECT has_schema_privilege(%s, %s, 'CREATE')"
        " AND bool_and(has_function_privilege(%s, f, 'EXECUTE')) FROM unnest(%s::text[]) f",
        (DatabaseRole.INGEST.value, _STAGING_SCHEMA, DatabaseRole.INGEST.value,
         list(_INGEST_FUNCTIONS)),
    ).fetchone()  # fmt: skip
    return row is not None and int(row[0]) == 0 and staging is not None and bool(staging[0])


def report(conn: psycopg.Connection[Any]) -> list[RoleReport]:
    """Each role: whether it exists, may log in, is a superuser, and on how many of the
    schema's tables it may write and read."""
    reports = []
    for role in DatabaseRole:
        row = conn.execute(
            "SELECT rolcanlogin, rolsuper FROM pg_roles WHERE rolname = %s", (role.value,)
        ).fetchone()
        if row is None:
            reports.append(RoleReport(role.value, False, False, False, 0, 0))
            continue
        counts = conn.execute(
            """SELECT count(*) FILTER (WHERE has_table_privilege(%(r)s, c.oid, 'INSERT')),
                      count(*) FILTER (WHERE has_table_privilege(%(r)s, c.oid, 'SELECT'))
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
                  AND NOT c.relispartition""",
            {"r": role.value},
        ).fetchone()
        assert counts is not None
        reports.append(
            RoleReport(role.value, True, bool(row[0]), bool(row[1]), int(counts[0]), int(counts[1]))
        )
    return reports


def _exists(conn: psycopg.Connection[Any], role: DatabaseRole) -> bool:
    row = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role.value,)).fetchone()
    return row is not None


def _may_create_roles(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute(
        "SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user"
    ).fetchone()
    return bool(row and row[0])
