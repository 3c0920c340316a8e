"""Running itself through the served API: alerts, job runs, quality checks (analysts), and
the Great Expectations report behind a cookie scoped to its pages."""

from __future__ import annotations

import httpx

from tests.fixtures.api import Served
from tests.fixtures.cli import shopstream

PATHS = ("/api/v1/alerts", "/api/v1/jobs/runs", "/api/v1/quality/checks")


def test_only_analysts_see_operations(served: Served) -> None:
    with served.client("viewer") as viewer, served.client("analyst") as analyst:
        for path in PATHS:
            assert viewer.get(path).status_code == 403, path
            assert analyst.get(path).status_code == 200, path
        assert viewer.post("/api/v1/quality/docs/session").status_code == 403


def test_alerts_and_job_runs_as_the_cli_leaves_them(served: Served) -> None:
    shopstream("alerts", "raise", "airflow_task_failed", "--fingerprint", "airflow:x:daily",
               "--summary", "daily failed", "--severity", "critical", env=served.env)  # fmt: skip
    shopstream("jobs", "run", "customers", env=served.env)
    with served.client("analyst") as analyst:
        firing = analyst.get("/api/v1/alerts", params={"state": "firing"}).json()
        mine = [a for a in firing if a["fingerprint"] == "airflow:x:daily"]
        assert len(mine) == 1 and mine[0]["severity"] == "critical"
        runs = analyst.get("/api/v1/jobs/runs", params={"job": "customers"}).json()
        assert runs[0]["status"] == "success" and runs[0]["trigger"] == "manual"
        assert runs[0]["rows_affected"] > 0
        shopstream("alerts", "raise", "airflow_task_failed", "--fingerprint", "airflow:x:daily",
                   "--summary", "daily failed", "--resolve", env=served.env)  # fmt: skip
        resolved = analyst.get("/api/v1/alerts", params={"state": "resolved"}).json()
        assert "airflow:x:daily" in {a["fingerprint"] for a in resolved}
        assert analyst.get("/api/v1/alerts", params={"state": "sideways"}).status_code == 422


def test_quality_checks_and_the_report_behind_its_cookie(served: Served) -> None:
    shopstream("quality", "run", "--date", "2026-01-01", env=served.env, check=False)
    with served.client("analyst") as analyst:
        checks = analyst.get("/api/v1/quality/checks").json()
        assert {c["suite"] for c in checks} >= {"events", "volume", "quarantine"}
        session = analyst.post("/api/v1/quality/docs/session")
        assert session.status_code == 204
        cookie = session.headers["set-cookie"]
        assert "Path=/quality-docs" in cookie and "HttpOnly" in cookie
        assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
        metrics = analyst.get(
            "/metrics", headers={"Authorization": f"Bearer {served.keys['analyst']}"}
        ).text
    passed = [line for line in metrics.splitlines()
              if line.startswith("shopstream_quality_check_success{")]  # fmt: skip
    assert any('suite="events"' in line and 'column="event_id"' in line for line in passed)
    assert "shopstream_quality_check_timestamp_seconds{" in metrics
    key = served.keys["analyst"]
    with httpx.Client(base_url=served.base_url, timeout=30) as browser:
        assert browser.get("/quality-docs/index.html").status_code == 401
        browser.cookies.set("shopstream_docs", key)
        page = browser.get("/quality-docs/index.html")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assert "unsafe-inline" in page.headers["content-security-policy"]
        assert browser.get("/quality-docs/../../settings.json").status_code == 404
        assert browser.get("/quality-docs/%2e%2e/%2e%2e/privacy.key").status_code == 404
        browser.cookies.set("shopstream_docs", served.keys["viewer"])
        assert browser.get("/quality-docs/index.html").status_code == 403
