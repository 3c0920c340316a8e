"""`shopstream db up|status|url|down` manage the private server, as root or not."""

from __future__ import annotations

import shutil

import psycopg

from tests.fixtures.cli import cli_env, shopstream
from tests.fixtures.postgres import service_reachable_dir


def test_db_lifecycle_and_migrations() -> None:
    home = service_reachable_dir("shopstream-dbcli-")
    env = cli_env(None, home / "state")
    try:
        assert shopstream("db", "status", env=env, check=False).returncode == 1
        shopstream("db", "up", env=env)
        assert "running" in shopstream("db", "status", env=env).stdout
        url = shopstream("db", "url", env=env).stdout.strip()
        assert url.startswith("postgresql://") and "127.0.0.1" in url
        with psycopg.connect(url) as conn:
            tables = {
                row[0]
                for row in conn.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                )
            }
            version = conn.execute("SHOW server_version_num").fetchone()
        assert {"events", "quarantine", "ingested_files", "batches"} <= tables
        assert version is not None and int(str(version[0])) >= 140000
        socket_url = shopstream("db", "url", "--socket", env=env).stdout.strip()
        with psycopg.connect(socket_url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert "up to date" in shopstream("db", "migrate", env=env).stdout
        shopstream("db", "down", env=env)
        assert shopstream("db", "status", env=env, check=False).returncode == 1
    finally:
        shopstream("db", "down", env=env, check=False)
        shutil.rmtree(home, ignore_errors=True)
