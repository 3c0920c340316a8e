"""The API against careless and hostile callers: bounded answers, shared limits, headers,
guarded metrics, and a database role that can only read."""

from __future__ import annotations

import shutil

import httpx
import psycopg
import pytest

from shopstream.api.ready import wait_ready
from tests.fixtures.api import Served, free_port
from tests.fixtures.cli import cli_env, shopstream, start_shopstream
from tests.fixtures.postgres import service_reachable_dir

SERVE_ENV = {
    "SHOPSTREAM_API_RATE_BURST": "1000",
    "SHOPSTREAM_API_RATE_PER_SECOND": "1000",
    "SHOPSTREAM_API_AUTH_FAILURE_BURST": "5",
    "SHOPSTREAM_API_AUTH_FAILURES_PER_SECOND": "0.01",
}


def test_quarantine_answers_are_bounded_whatever_was_stored(served: Served) -> None:
    with psycopg.connect(served.database_url) as conn:
        batch = conn.execute("SELECT min(batch_id) FROM batches").fetchone()
        assert batch is not None
        conn.execute(
            "INSERT INTO quarantine (batch_id, source, line_no, scope, rules, raw)"
            " SELECT %s, 'huge.csv', 2, 'row', '{line_too_long}', repeat('x', 5000000)"
            " FROM generate_series(1, 12)",
            (batch[0],),
        )
    with served.client("analyst") as analyst:
        response = analyst.get("/api/v1/quarantine", params={"rule": "line_too_long"})
        assert response.status_code == 200
        assert len(response.content) < 100_000
        rows = response.json()
        assert len(rows) == 12
        assert all(r["raw_truncated"] and r["raw_size"] == 5_000_000 for r in rows)
        after = analyst.get(
            "/api/v1/quarantine",
            params={"rule": "line_too_long", "after": rows[5]["quarantine_id"]},
        ).json()
        assert [r["quarantine_id"] for r in after] == [r["quarantine_id"] for r in rows[6:]]


def test_every_response_carries_security_headers(served: Served) -> None:
    with httpx.Client(base_url=served.base_url) as client:
        for path in ("/", "/api/v1/kpis", "/healthz", "/static/app.js"):
            headers = client.get(path).headers
            assert headers["x-content-type-options"] == "nosniff", path
            assert headers["x-frame-options"] == "DENY", path
            assert "frame-ancestors 'none'" in headers["content-security-policy"], path
        dashboard = client.get("/").headers["content-security-policy"]
    assert "script-src 'self';" in dashboard and "unsafe-eval" not in dashboard


def test_metrics_need_an_analyst_key(served: Served) -> None:
    with httpx.Client(base_url=served.base_url) as client:
        assert client.get("/metrics").status_code == 401
        viewer = {"Authorization": f"Bearer {served.keys['viewer']}"}
        assert client.get("/metrics", headers=viewer).status_code == 401
        analyst = {"Authorization": f"Bearer {served.keys['analyst']}"}
        scraped = client.get("/metrics", headers=analyst)
    assert scraped.status_code == 200 and "shopstream_pipeline_events_read_total" in scraped.text


def test_failed_keys_are_throttled_per_address(served: Served) -> None:
    with httpx.Client(base_url=served.base_url) as client:
        codes = [
            client.get("/api/v1/kpis", headers={"X-API-Key": f"ssk_wrong{n}"}).status_code
            for n in range(8)
        ]
    with psycopg.connect(served.database_url) as conn:  # let this address in again
        conn.execute("DELETE FROM api_rate_buckets WHERE bucket LIKE 'auth:%'")
    assert codes[:5] == [401] * 5
    assert codes[5:] == [429] * 3


def test_workers_share_one_rate_limit(served: Served) -> None:
    env = {
        **served.env,
        "SHOPSTREAM_API_RATE_BURST": "12",
        "SHOPSTREAM_API_RATE_PER_SECOND": "0.01",
    }
    port = free_port()
    process = start_shopstream("serve", "--port", str(port), "--workers", "2", env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, alive=lambda: process.poll() is None)
        key = {"X-API-Key": served.keys["viewer"]}
        codes = []
        for _ in range(40):  # a new connection each time, so both workers answer
            with httpx.Client(base_url=base) as client:
                codes.append(client.get("/api/v1/kpis", headers=key).status_code)
    finally:
        process.terminate()
        process.communicate(timeout=30)
    assert codes.count(200) == 12
    assert codes.count(429) == 28


@pytest.mark.slow
def test_the_embedded_roles_keep_the_api_read_only(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Embedded server: each process connects as a role of its own, none a superuser;
    the API's cannot write events or read server files."""
    work = service_reachable_dir("shopstream-roles-")
    env = cli_env(None, work / "home")
    try:
        shopstream("db", "up", env=env)
        listing = shopstream("db", "roles", env=env).stdout
        for role in ("shopstream_owner", "shopstream_ingest", "shopstream_api"):
            assert role in listing
        api_url = shopstream("db", "url", "--role", "api", env=env).stdout.strip()
        ingest_url = shopstream("db", "url", "--role", "ingest", env=env).stdout.strip()
        with psycopg.connect(api_url) as conn:
            row = conn.execute(
                "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
            ).fetchone()
            assert row == (False,)
            assert conn.execute("SELECT count(*) FROM events").fetchone() == (0,)
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("INSERT INTO events (event_id) VALUES (gen_random_uuid())")
            conn.rollback()
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("SELECT pg_read_file('/etc/passwd')")
        with (
            psycopg.connect(ingest_url) as conn,
            pytest.raises(psycopg.errors.InsufficientPrivilege),
        ):
            conn.execute("SELECT count(*) FROM api_keys")
    finally:
        shopstream("db", "down", env=env, check=False)
        shutil.rmtree(work, ignore_errors=True)


@pytest.mark.slow
def test_a_database_restart_costs_no_request(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Pooled connections are checked before use: after a restart none fails a request."""
    from shopstream.store.server import EmbeddedPostgres

    work = service_reachable_dir("shopstream-restart-")
    server = EmbeddedPostgres(work / "pg-home")
    server.start()
    port = free_port()
    env = cli_env(server.url(), work / "home")
    try:
        shopstream("db", "migrate", env=env)
        key = shopstream("apikey", "create", "--role", "viewer", env=env).stdout.strip()
        process = start_shopstream("serve", "--port", str(port), env=env)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_ready(base, alive=lambda: process.poll() is None)
            with httpx.Client(base_url=base, headers={"X-API-Key": key}) as client:
                before = [client.get("/api/v1/kpis").status_code for _ in range(20)]
                server.stop()
                server.start()
                after = [client.get("/api/v1/kpis").status_code for _ in range(20)]
        finally:
            process.terminate()
            process.communicate(timeout=30)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    assert before == [200] * 20
    assert after == [200] * 20
