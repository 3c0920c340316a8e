"""Deliver stored alerts: to Alertmanager's API when one is configured, else to webhooks
(generic JSON and Slack-compatible) and e-mail.

Alertmanager de-duplicates, groups, silences and routes by itself; it forgets an alert that
is not re-sent, so every firing alert is posted at each delivery and a resolved one once
with its end time. Webhooks and e-mail have no such memory, so they get each firing and each
resolution exactly once (marked in the row after a successful send; a failed send is kept
in ``delivery_error`` and retried at the next delivery).
"""

from __future__ import annotations

import json
import logging
import smtplib
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from typing import Any, Final, Literal
from urllib.parse import urlsplit

import psycopg
from psycopg.rows import dict_row

from shopstream.errors import describe
from shopstream.settings import Settings

log = logging.getLogger(__name__)

TIMEOUT_SECONDS: Final = 10.0
Status = Literal["firing", "resolved"]


@dataclass(frozen=True, slots=True)
class Channels:
    alertmanager_url: str | None = None
    webhook_url: str | None = None
    slack_webhook_url: str | None = None
    smtp_url: str | None = None  # smtp://host:port
    email_to: tuple[str, ...] = ()
    email_from: str = "shopstream@localhost"
    dashboard_url: str | None = None

    @classmethod
    def from_settings(cls, s: Settings) -> Channels:
        return cls(
            alertmanager_url=s.alertmanager_url, webhook_url=s.alert_webhook_url,
            slack_webhook_url=s.alert_slack_webhook_url, smtp_url=s.alert_smtp_url,
            email_to=tuple(s.alert_email_to), email_from=s.alert_email_from,
        )  # fmt: skip

    @property
    def any(self) -> bool:
        return bool(
            self.alertmanager_url
            or self.webhook_url
            or self.slack_webhook_url
            or (self.smtp_url and self.email_to)
        )


@dataclass(frozen=True, slots=True)
class Delivered:
    firing: int
    resolved: int
    failed: str | None


_PENDING: Final = """
SELECT alert_id, fingerprint, rule, severity, labels, summary, value, started_at, resolved_at,
       CASE WHEN resolved_at IS NULL THEN 'firing' ELSE 'resolved' END AS status
  FROM alerts
 WHERE (resolved_at IS NULL AND (%(resend)s OR notified_firing_at IS NULL))
    OR (resolved_at IS NOT NULL AND notified_resolved_at IS NULL)
 ORDER BY alert_id
"""


def deliver(conn: psycopg.Connection[Any], channels: Channels) -> Delivered:
    """Send what is pending on every configured channel; returns what was sent."""
    if not channels.any:
        return Delivered(0, 0, None)
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(_PENDING, {"resend": bool(channels.alertmanager_url)}).fetchall()
    if not rows:
        return Delivered(0, 0, None)
    try:
        if channels.alertmanager_url:
            _post_json(
                channels.alertmanager_url.rstrip("/") + "/api/v2/alerts",
                [_alertmanager_alert(r, channels.dashboard_url) for r in rows],
            )
        else:
            if channels.webhook_url:
                _post_json(channels.webhook_url, _webhook_body(rows))
            if channels.slack_webhook_url:
                _post_json(channels.slack_webhook_url, {"text": _text(rows)})
            if channels.smtp_url and channels.email_to:
                _send_mail(channels, rows)
    except (OSError, smtplib.SMTPException) as error:
        message = describe(error)
        log.warning("alert delivery failed (retried at the next delivery): %s", message)
        conn.execute(
            "UPDATE alerts SET delivery_error = %s WHERE alert_id = ANY(%s)",
            (message, [r["alert_id"] for r in rows]),
        )
        return Delivered(0, 0, message)
    firing = [r["alert_id"] for r in rows if r["status"] == "firing"]
    resolved = [r["alert_id"] for r in rows if r["status"] == "resolved"]
    conn.execute(
        """UPDATE alerts SET delivery_error = NULL,
                  notified_firing_at = coalesce(notified_firing_at, clock_timestamp()),
                  notified_resolved_at = CASE WHEN alert_id = ANY(%s) THEN clock_timestamp()
                                              ELSE notified_resolved_at END
            WHERE alert_id = ANY(%s)""",
        (resolved, firing + resolved),
    )
    return Delivered(len(firing), len(resolved), None)


def _alertmanager_alert(row: dict[str, Any], dashboard_url: str | None) -> dict[str, Any]:
    labels = {str(k): str(v) for k, v in (row["labels"] or {}).items()}
    labels |= {"alertname": row["rule"], "severity": row["severity"], "source": "shopstream"}
    alert: dict[str, Any] = {
        "labels": labels,
        "annotations": {"summary": row["summary"], "fingerprint": row["fingerprint"]},
        "startsAt": _iso(row["started_at"]),
    }
    if row["resolved_at"] is not None:
        alert["endsAt"] = _iso(row["resolved_at"])
    if dashboard_url:
        alert["generatorURL"] = dashboard_url.rstrip("/") + "/#operations"
    return alert


def _webhook_body(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return {
        "source": "shopstream",
        "alerts": [
            {
                "status": r["status"],
                "rule": r["rule"],
                "severity": r["severity"],
                "summary": r["summary"],
                "value": r["value"],
                "labels": r["labels"],
                "fingerprint": r["fingerprint"],
                "started_at": _iso(r["started_at"]),
                "resolved_at": _iso(r["resolved_at"]) if r["resolved_at"] else None,
            }
            for r in rows
        ],
    }


def _text(rows: Sequence[dict[str, Any]]) -> str:
    icon = {"firing": "FIRING", "resolved": "RESOLVED"}
    return "\n".join(
        f"[{icon[r['status']]}] {r['severity']} {r['rule']}: {r['summary']}" for r in rows
    )


def _send_mail(channels: Channels, rows: Sequence[dict[str, Any]]) -> None:
    assert channels.smtp_url is not None
    where = urlsplit(channels.smtp_url)
    firing = sum(r["status"] == "firing" for r in rows)
    message = EmailMessage()
    message["Subject"] = (
        f"[ShopStream] {firing} firing, {len(rows) - firing} resolved: "
        + ", ".join(sorted({r["rule"] for r in rows}))
    )
    message["From"] = channels.email_from
    message["To"] = ", ".join(channels.email_to)
    message.set_content(_text(rows) + "\n")
    with smtplib.SMTP(
        where.hostname or "127.0.0.1", where.port or 25, timeout=TIMEOUT_SECONDS
    ) as smtp:
        if where.username:
            smtp.starttls()
            smtp.login(where.username, where.password or "")
        smtp.send_message(message)


def _post_json(url: str, body: object) -> None:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
        response.read()


def _iso(moment: datetime) -> str:
    return moment.isoformat()
