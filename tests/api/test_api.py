"""The REST API against a real PostgreSQL with loaded data, through a real server."""

from __future__ import annotations

from decimal import Decimal

import httpx
import psycopg
import pytest

from tests.fixtures.analytics import NET_AMOUNT
from tests.fixtures.api import Served, new_key
from tests.fixtures.cli import shopstream

WINDOW = {"from": "2026-01-01T06:00:00Z", "to": "2026-01-02T06:00:00Z"}
INJECTIONS = ["'; DROP TABLE events; --", "1 OR 1=1", '" OR ""="', "x'||pg_sleep(5)||'"]


def test_kpis_equal_plain_sql_over_events(served: Served) -> None:
    with served.client("viewer") as client:
        kpis = client.get("/api/v1/kpis", params=WINDOW).json()
    with psycopg.connect(served.database_url) as conn:
        row = conn.execute(
            f"""SELECT sum({NET_AMOUNT}), count(*) FILTER (WHERE event_type = 'purchase'),
                       count(*), count(DISTINCT user_id),
                       count(DISTINCT user_id) FILTER (WHERE event_type = 'purchase')
                  FROM events WHERE event_timestamp >= %s AND event_timestamp < %s""",
            (WINDOW["from"], WINDOW["to"]),
        ).fetchone()
    assert row is not None
    revenue, orders, events, active, buyers = row
    assert orders > 0
    assert kpis == {
        "revenue": str(revenue),
        "currency": "USD",  # the generator's one currency: no conversion, no note
        "revenue_by_currency": [
            {
                "currency": "USD",
                "revenue": str(revenue),
                "orders": orders,
                "reporting_revenue": None,
            }
        ],
        "revenue_note": None,
        "orders": orders,
        "average_order_value": str(round(revenue / orders, 2)),
        "conversion_rate": round(buyers / active, 4),
        "active_users": active,
        "events": events,
    }


def test_no_or_bad_key_is_401_and_a_missing_right_403(served: Served) -> None:
    with httpx.Client(base_url=served.base_url) as anonymous:
        assert anonymous.get("/api/v1/kpis").status_code == 401
        bad = anonymous.get("/api/v1/kpis", headers={"Authorization": "Bearer ssk_nope"})
        assert bad.status_code == 401
        bearer = {"Authorization": f"Bearer {served.keys['viewer']}"}
        assert anonymous.get("/api/v1/kpis", headers=bearer).status_code == 200
    with served.client("viewer") as viewer:
        assert viewer.get("/api/v1/segments").status_code == 200
        assert viewer.get("/api/v1/quality").status_code == 403
        assert viewer.get("/api/v1/customers/user_1").status_code == 403
    with served.client("analyst") as analyst:
        assert analyst.get("/api/v1/quality").status_code == 200
        assert analyst.get("/api/v1/apikeys").status_code == 403
        assert analyst.post("/api/v1/quarantine/replay", json={}).status_code == 403


def test_keys_are_managed_by_admins_and_revocation_is_immediate(served: Served) -> None:
    with served.client("admin") as admin:
        created = admin.post("/api/v1/apikeys", json={"role": "viewer", "name": "temp"})
        assert created.status_code == 201
        key, key_id = created.json()["key"], created.json()["key_id"]
        listed = {k["key_id"]: k for k in admin.get("/api/v1/apikeys").json()}
        assert listed[key_id]["active"] and key not in str(listed)  # never shown again
        headers = {"X-API-Key": key}
        assert admin.get("/api/v1/coverage", headers=headers).status_code == 200
        assert admin.delete(f"/api/v1/apikeys/{key_id}").status_code == 204
        assert admin.get("/api/v1/coverage", headers=headers).status_code == 401
        assert admin.delete(f"/api/v1/apikeys/{key_id}").status_code == 404
    with psycopg.connect(served.database_url) as conn:
        stored = conn.execute("SELECT count(*) FROM api_keys WHERE key_prefix = %s", (key[:12],))
        assert stored.fetchone() == (1,)
        clear = conn.execute("SELECT count(*) FROM api_keys WHERE key_digest = %s", (key.encode(),))
        assert clear.fetchone() == (0,)  # a digest, not the key


def test_expired_keys_are_refused(served: Served) -> None:
    key = new_key(served.env, "viewer", "--expires", "1")
    headers = {"X-API-Key": key}
    assert httpx.get(f"{served.base_url}/api/v1/coverage", headers=headers).status_code == 200
    with psycopg.connect(served.database_url) as conn:  # a day later
        conn.execute(
            "UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE key_prefix = %s",
            (key[:12],),
        )
    assert httpx.get(f"{served.base_url}/api/v1/coverage", headers=headers).status_code == 401


def test_rate_limit_answers_429_with_retry_after(served: Served) -> None:
    key = new_key(served.env, "viewer", "--name", "burst")
    with httpx.Client(base_url=served.base_url, headers={"X-API-Key": key}) as client:
        codes = [client.get("/api/v1/coverage").status_code for _ in range(90)]
        limited = client.get("/api/v1/coverage")
    assert codes[:60] == [200] * 60 and 429 in codes
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1


def test_inputs_are_validated_and_injection_strings_are_harmless(served: Served) -> None:
    with psycopg.connect(served.database_url) as conn:
        before = conn.execute("SELECT count(*) FROM events").fetchone()
    with served.client("admin") as client:
        bad_window = client.get("/api/v1/kpis", params={"from": "2026-02-01", "to": "2026-01-01"})
        assert bad_window.status_code == 422 and "before" in bad_window.text
        assert client.get("/api/v1/kpis", params={"from": "yesterday"}).status_code == 422
        assert client.get("/api/v1/products/top", params={"limit": 100000}).status_code == 422
        assert client.get("/api/v1/products/top", params={"by": "price"}).status_code == 422
        for text in INJECTIONS:
            for path, params in (
                ("/api/v1/timeseries", {**WINDOW, "category": text}),
                ("/api/v1/quarantine", {"rule": text}),
                ("/api/v1/kpis", {"from": text}),
                ("/api/v1/products/top", {"by": text}),
            ):
                assert client.get(path, params=params).status_code in (200, 422)
            assert client.get(f"/api/v1/customers/{text}").status_code == 404
            assert client.get(f"/api/v1/customers/{text}/events").json() == []
        # PostgreSQL text cannot hold NUL: refused up front, never a 500.
        assert (
            client.post("/api/v1/apikeys", json={"role": "viewer", "name": "a\x00"}).status_code
            == 422
        )
        assert client.get("/api/v1/quarantine", params={"rule": "\x00"}).status_code == 422
        assert client.get("/api/v1/customers/a%00b").status_code == 422
    with psycopg.connect(served.database_url) as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone() == before


def test_request_bodies_are_limited(served: Served) -> None:
    with served.client("admin") as client:
        huge = client.post(
            "/api/v1/apikeys", content=b"{" + b" " * 100_000 + b"}",
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
    assert huge.status_code == 413


def test_customer_quarantine_and_replay(served: Served) -> None:
    with psycopg.connect(served.database_url) as conn:
        user = conn.execute(
            "SELECT user_id, revenue FROM customer_metrics ORDER BY revenue DESC LIMIT 1"
        ).fetchone()
        open_rows = conn.execute(
            "SELECT count(*) FROM quarantine WHERE status = 'quarantined'"
        ).fetchone()
    assert user is not None and open_rows is not None and open_rows[0] > 0
    with served.client("analyst") as analyst:
        customer = analyst.get(f"/api/v1/customers/{user[0]}").json()
        assert Decimal(customer["revenue"]) == user[1] and customer["segment"]
        events = analyst.get(f"/api/v1/customers/{user[0]}/events", params={"limit": 5}).json()
        assert len(events) == 5
        stamps = [e["event_timestamp"] for e in events]
        assert stamps == sorted(stamps, reverse=True)
        page = analyst.get("/api/v1/quarantine", params={"limit": 3, "offset": 1}).json()
        assert len(page) == 3 and all(row["raw"] and row["rules"] for row in page)
        quality = analyst.get("/api/v1/quality").json()
        assert quality["rows_read"] == (
            quality["rows_loaded"] + quality["duplicates"] + quality["rows_quarantined"]
        )
    with served.client("admin") as admin:
        replayed = admin.post("/api/v1/quarantine/replay", json={"rule": "event_type_known"})
    assert replayed.status_code == 200
    result = replayed.json()
    assert result["rows_read"] > 0 and result["rows_loaded"] == 0  # still unknown types
    with psycopg.connect(served.database_url) as conn:
        reopened = conn.execute(
            "SELECT count(*) FROM quarantine WHERE status = 'quarantined'"
        ).fetchone()
    assert reopened == open_rows  # closed and quarantined again under today's rules


def test_health_readiness_and_metrics(served: Served) -> None:
    with httpx.Client(base_url=served.base_url) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.get("/readyz").json() == {"status": "ready"}
        client.get("/api/v1/kpis", headers={"X-API-Key": served.keys["viewer"]})
        scrape = {"Authorization": f"Bearer {served.keys['analyst']}"}
        metrics = client.get("/metrics", headers=scrape).text
    assert (
        'shopstream_api_request_seconds_count{method="GET",route="/api/v1/kpis",status="200"}'
        in metrics
    )
    with psycopg.connect(served.database_url) as conn:
        read = conn.execute("SELECT sum(rows_read) FROM batches").fetchone()
    assert read is not None
    assert f"shopstream_pipeline_events_read_total {float(read[0])}" in metrics
    assert "shopstream_pipeline_batch_seconds_bucket" in metrics


def test_openapi_is_served(served: Served) -> None:
    with httpx.Client(base_url=served.base_url) as client:
        schema = client.get("/openapi.json").json()
        assert client.get("/docs").status_code == 200
    assert "/api/v1/kpis" in schema["paths"] and "/api/v1/apikeys" in schema["paths"]


@pytest.mark.parametrize("role", ["viewer"])
def test_cli_lists_and_revokes_keys(served: Served, role: str) -> None:
    key = new_key(served.env, role, "--name", "cli")
    listed = shopstream("apikey", "list", env=served.env).stdout
    assert key[:12] in listed and key not in listed
    with psycopg.connect(served.database_url) as conn:
        key_id = conn.execute(
            "SELECT key_id FROM api_keys WHERE key_prefix = %s", (key[:12],)
        ).fetchone()
    assert key_id is not None
    shopstream("apikey", "revoke", str(key_id[0]), env=served.env)
    response = httpx.get(f"{served.base_url}/api/v1/kpis", headers={"X-API-Key": key})
    assert response.status_code == 401
