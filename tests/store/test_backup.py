"""Backup → restore into a fresh database: every table's rows and content equal; the runner
then loads only the files that arrived after the backup."""

from __future__ import annotations

import psycopg
from psycopg import sql

from shopstream.store.backup import table_rows
from shopstream.store.server import EmbeddedPostgres
from tests.fixtures.cli import cli_env, shopstream
from tests.fixtures.counts import outcome
from tests.fixtures.postgres import fresh_database, service_reachable_dir


def checksums(url: str) -> dict[str, tuple[int, object]]:
    """Rows and an order-independent digest of each table's content."""
    digest = "SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {} t"
    with psycopg.connect(url) as conn:
        return {
            name: (rows, conn.execute(sql.SQL(digest).format(sql.Identifier(name))).fetchone())
            for name, rows in table_rows(conn).items()
        }


def test_backup_then_restore_holds_everything_and_resumes_exactly_once(
    pg_server: EmbeddedPostgres,
) -> None:
    work = service_reachable_dir("shopstream-backup-")
    source, target = fresh_database(pg_server, "backup"), fresh_database(pg_server, "restored")
    inbox = work / "in"
    env = cli_env(source, work / "home")
    shopstream("generate", "--out", str(inbox), "--events", "20000", "--seed", "21", "--format",
               "canonical", "--dirty", "0.02", "--duplicates", "0.02", env=env)  # fmt: skip
    shopstream("run", "--source", str(inbox), "--until-idle", env=env)
    shopstream("batch", "customers", env=env)

    created = shopstream("backup", "create", str(work / "backups" / "b1"), env=env)
    assert "backup in" in created.stdout
    listed = shopstream("backup", "list", str(work / "backups"), env={**env, "COLUMNS": "200"})
    assert "b1" in listed.stdout

    restored_env = cli_env(target, work / "home2")
    shopstream("backup", "restore", str(work / "backups" / "b1"), env=restored_env)
    assert checksums(target) == checksums(source)
    again = shopstream("backup", "restore", str(work / "backups" / "b1"), env=restored_env,
                       check=False)  # fmt: skip
    assert again.returncode == 1 and "not empty" in " ".join(again.stderr.split())

    # New files land after the backup: the restored installation loads them and only them.
    before = outcome(target)
    shopstream("generate", "--out", str(inbox), "--events", "3000", "--seed", "22",
               "--format", "canonical", env=env)  # fmt: skip
    shopstream("run", "--source", str(inbox), "--until-idle", env=restored_env)
    after = outcome(target)
    assert after.read - before.read == 3000
    assert after.loaded - before.loaded == 3000
