"""ShopStream's own data alerts: fired once per condition, resolved once, delivered to a
webhook (generic and Slack-compatible) and e-mail on real receivers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from shopstream.alerting.anomaly import baseline
from shopstream.alerting.delivery import Channels, deliver
from shopstream.alerting.state import Scope, Signal, alert_rows, sync
from shopstream.jobs.catalog import Jobs
from shopstream.jobs.runs import RetryPolicy
from shopstream.settings import Settings
from tests.fixtures.history import insert_events, migrated
from tests.fixtures.receivers import Mailbox, Webhook

SCOPE = Scope(("volume_anomaly",))
SPIKE = Signal("anomaly:volume", "volume_anomaly", "warning", "10x the usual traffic", 10.0)


def test_a_condition_fires_once_while_it_holds_and_resolves_once(database_url: str) -> None:
    url = migrated(database_url)
    with psycopg.connect(url, autocommit=True) as conn:
        assert sync(conn, SCOPE, [SPIKE]).fired == ("anomaly:volume",)
        again = sync(conn, SCOPE, [SPIKE])
        assert again.fired == () and again.resolved == ()
        assert sync(conn, SCOPE, []).resolved == ("anomaly:volume",)
        assert sync(conn, SCOPE, []).resolved == ()
        # It holds again later: a new firing, a new row.
        assert sync(conn, SCOPE, [SPIKE]).fired == ("anomaly:volume",)
        rows = alert_rows(conn)
    assert [r["resolved_at"] is None for r in rows] == [True, False]


def test_an_evaluator_resolves_only_what_it_owns(database_url: str) -> None:
    url = migrated(database_url)
    other = Signal("quality:events:unique", "quality_check", "critical", "dupes",
                   labels={"suite": "events"})  # fmt: skip
    with psycopg.connect(url, autocommit=True) as conn:
        sync(conn, Scope(("quality_check",), "suite", ("events",)), [other])
        sync(conn, SCOPE, [SPIKE])
        # The volume evaluator finds nothing: the quality alert stays.
        assert sync(conn, SCOPE, []).resolved == ("anomaly:volume",)
        # A quality run of another suite leaves the events suite's alert alone.
        assert sync(conn, Scope(("quality_check",), "suite", ("volume",)), []).resolved == ()
        assert len(alert_rows(conn, state="firing")) == 1


def test_the_baseline_is_robust_and_needs_history() -> None:
    assert baseline([100, 110], 0.1) is None  # two weeks: no baseline yet
    found = baseline([100, 110, 90, 5000], 0.1)  # one odd week does not move it
    assert found is not None and found.median == 105
    assert abs(found.score(108)) < 1
    assert found.score(1000) > 4


def test_webhook_slack_and_email_get_each_firing_and_resolution_once(
    database_url: str, webhook: Webhook, mailbox: Mailbox
) -> None:
    url = migrated(database_url)
    slack = Webhook()
    channels = Channels(
        webhook_url=webhook.url, slack_webhook_url=slack.url, smtp_url=mailbox.url,
        email_to=("ops@example.com",),
    )  # fmt: skip
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            sync(conn, SCOPE, [SPIKE])
            assert deliver(conn, channels).firing == 1
            assert deliver(conn, channels).firing == 0  # already told
            sync(conn, SCOPE, [SPIKE])  # still holding: nothing new to say
            assert deliver(conn, channels).firing == 0
            sync(conn, SCOPE, [])
            assert deliver(conn, channels).resolved == 1
            assert deliver(conn, channels).resolved == 0
        statuses = [a["status"] for body in webhook.bodies for a in body["alerts"]]
        assert statuses == ["firing", "resolved"]
        assert webhook.bodies[0]["alerts"][0]["rule"] == "volume_anomaly"
        assert [b["text"].split("]")[0] for b in slack.bodies] == ["[FIRING", "[RESOLVED"]
        assert len(mailbox.messages) == 2
        assert "1 firing" in mailbox.messages[0]["Subject"]
        assert "10x the usual traffic" in mailbox.messages[0].get_payload()
    finally:
        slack.close()


def test_a_failed_delivery_is_kept_and_sent_at_the_next_one(
    database_url: str, webhook: Webhook
) -> None:
    url = migrated(database_url)
    with psycopg.connect(url, autocommit=True) as conn:
        sync(conn, SCOPE, [SPIKE])
        failed = deliver(conn, Channels(webhook_url="http://127.0.0.1:9/nothing-listens"))
        assert failed.failed is not None
        assert alert_rows(conn)[0]["delivery_error"]
        assert deliver(conn, Channels(webhook_url=webhook.url)).firing == 1
        assert alert_rows(conn)[0]["delivery_error"] is None
    assert len(webhook.bodies) == 1


def test_a_traffic_drop_against_the_same_hour_of_earlier_weeks_fires_and_clears(
    database_url: str, webhook: Webhook
) -> None:
    """Four earlier Tuesdays at 10:00 had ~100 events and 1,000 EUR; this Tuesday has 10
    events: volume and revenue alerts fire. The next hour is normal: both resolve."""
    url = migrated(database_url)
    tuesday_10 = datetime(2026, 3, 31, 10, tzinfo=UTC)

    def hour(start: datetime, events: int) -> list[tuple[datetime, str, str, float, str]]:
        step = timedelta(seconds=3600 / events)
        return [(start + n * step, "purchase", f"u{n}", 10.0, "EUR") for n in range(events)]

    rows = hour(tuesday_10, 10) + hour(tuesday_10 + timedelta(hours=1), 98)
    for week, events in zip(range(1, 5), (100, 96, 104, 99), strict=True):
        rows += hour(tuesday_10 - timedelta(weeks=week), events)
        rows += hour(tuesday_10 + timedelta(hours=1) - timedelta(weeks=week), events)
    with psycopg.connect(url) as conn:
        insert_events(conn, rows)
    clock = [tuesday_10 + timedelta(hours=1, minutes=1)]
    settings = Settings(alert_webhook_url=webhook.url)
    jobs = Jobs(settings, url, clock=lambda: clock[0], policy=RetryPolicy(0, 0))

    [record] = jobs.run("alerts")
    assert record.status == "success"
    assert sorted(record.details["fired"]) == ["anomaly:revenue:EUR", "anomaly:volume"]
    assert record.details["delivered_firing"] == 2
    [again] = jobs.run("alerts")  # a minute later, same hour: nothing new
    assert again.details["fired"] == [] and again.details["delivered_firing"] == 0

    clock[0] = tuesday_10 + timedelta(hours=2, minutes=1)
    [cleared] = jobs.run("alerts")
    assert sorted(cleared.details["resolved"]) == ["anomaly:revenue:EUR", "anomaly:volume"]
    statuses = [(a["fingerprint"], a["status"]) for b in webhook.bodies for a in b["alerts"]]
    assert sorted(statuses) == [
        ("anomaly:revenue:EUR", "firing"), ("anomaly:revenue:EUR", "resolved"),
        ("anomaly:volume", "firing"), ("anomaly:volume", "resolved"),
    ]  # fmt: skip


@pytest.mark.parametrize("events", [0, 99])
def test_no_alert_without_a_baseline_or_within_it(database_url: str, events: int) -> None:
    url = migrated(database_url)
    at = datetime(2026, 3, 31, 10, tzinfo=UTC)
    rows = [(at + timedelta(seconds=n), "view", "u", None, None) for n in range(events)]
    if events:  # three earlier weeks alike
        rows += [(at - timedelta(weeks=w, seconds=-n), "view", "u", None, None)
                 for w in (1, 2, 3) for n in range(100)]  # fmt: skip
    with psycopg.connect(url) as conn:
        insert_events(conn, rows)
    jobs = Jobs(Settings(), url, clock=lambda: at + timedelta(hours=1, minutes=5))
    [record] = jobs.run("alerts")
    assert record.details["fired"] == []
