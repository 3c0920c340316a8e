"""Fraud alerts through the served API: roles, filters, pages, and the review workflow."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg

from tests.fixtures.api import Served
from tests.fixtures.cli import shopstream


def _load_fraud(served: Served) -> None:
    inbox = served.inbox.parent / "fraud-api"
    if inbox.exists():
        return
    start = (datetime.now(UTC) - timedelta(hours=20)).strftime("%Y-%m-%dT%H:%M:%S")
    shopstream(
        "generate", "--out", str(inbox), "--events", "5000", "--seed", "13", "--format",
        "canonical", "--fraud", "0.05", "--start", start, "--days", "0.8", env=served.env,
    )  # fmt: skip
    shopstream("run", "--source", str(inbox), "--until-idle", env=served.env)


def test_only_analysts_read_and_review_fraud(served: Served) -> None:
    _load_fraud(served)
    with served.client("viewer") as viewer:
        assert viewer.get("/api/v1/fraud/alerts").status_code == 403
        assert viewer.get("/api/v1/fraud/summary").status_code == 403
        assert (
            viewer.post("/api/v1/fraud/alerts/1", json={"status": "confirmed"}).status_code == 403
        )
    with served.client("analyst") as analyst:
        assert analyst.get("/api/v1/fraud/alerts").status_code == 200
        assert analyst.get("/api/v1/fraud/summary").status_code == 200


def test_alerts_filter_and_page_and_reviews_stick(served: Served) -> None:
    _load_fraud(served)
    with served.client("analyst") as analyst:
        first = analyst.get("/api/v1/fraud/alerts", params={"status": "open", "limit": 3}).json()
        assert len(first) == 3 and all(a["status"] == "open" for a in first)
        assert [a["alert_id"] for a in first] == sorted(
            (a["alert_id"] for a in first), reverse=True
        )
        assert all(a["reasons"] and float(a["score"]) >= 0.7 for a in first)
        second = analyst.get(
            "/api/v1/fraud/alerts",
            params={"status": "open", "limit": 3, "after": first[-1]["alert_id"]},
        ).json()
        assert second and max(a["alert_id"] for a in second) < first[-1]["alert_id"]
        high = analyst.get("/api/v1/fraud/alerts", params={"min_score": 0.95}).json()
        assert all(float(a["score"]) >= 0.95 for a in high)

        target = first[0]["alert_id"]
        done = analyst.post(f"/api/v1/fraud/alerts/{target}", json={"status": "confirmed"})
        assert done.status_code == 200 and done.json()["status"] == "confirmed"
        assert done.json()["reviewed_by"]
        again = analyst.post(f"/api/v1/fraud/alerts/{target}", json={"status": "dismissed"})
        assert again.status_code == 409  # the first verdict stands
        assert (
            analyst.post("/api/v1/fraud/alerts/999999999", json={"status": "confirmed"}).status_code
            == 404
        )
        bad = analyst.post(f"/api/v1/fraud/alerts/{first[1]['alert_id']}", json={"status": "open"})
        assert bad.status_code == 422
        analyst.post(f"/api/v1/fraud/alerts/{first[1]['alert_id']}", json={"status": "dismissed"})

        summary = analyst.get("/api/v1/fraud/summary").json()
        confirmed = analyst.get("/api/v1/fraud/alerts", params={"status": "confirmed"}).json()
    assert target in [a["alert_id"] for a in confirmed]
    with psycopg.connect(served.database_url) as conn:
        counts = conn.execute(
            """SELECT count(*) FILTER (WHERE status = 'confirmed'),
                      count(*) FILTER (WHERE status = 'dismissed'), count(*)
                 FROM fraud_alerts"""
        ).fetchone()
    assert counts is not None
    assert (summary["confirmed"], summary["dismissed"], summary["alerts"]) == counts
    assert summary["precision"] == round(counts[0] / (counts[0] + counts[1]), 4)
    assert sum(r["alerts"] for r in summary["alerts_per_hour"]) == counts[2]
    assert summary["orders_scored"] > 0 and summary["score_distribution"]
