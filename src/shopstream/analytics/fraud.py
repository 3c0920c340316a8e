"""The read and review queries behind the fraud API and the dashboard's Fraud page."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

import polars as pl
import psycopg
from psycopg.rows import dict_row

AlertStatus = Literal["open", "confirmed", "dismissed"]
Review = Literal["confirmed", "dismissed"]
SCORE_BUCKETS: Final = 10


def alerts(
    conn: psycopg.Connection[Any],
    *,
    status: AlertStatus | None,
    min_score: float,
    start: datetime,
    end: datetime,
    limit: int,
    after: int | None,
) -> list[dict[str, Any]]:
    """Alerts created in ``[start, end)``, newest first; ``after`` pages by alert id."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            """SELECT a.alert_id, a.event_id::text AS event_id, s.order_id, a.user_id, a.score,
                      a.reasons, a.status, a.created_at, a.reviewed_by, a.reviewed_at,
                      s.event_type, s.event_timestamp, s.amount, s.model_version, s.features
                 FROM fraud_alerts a JOIN fraud_scores s USING (event_id)
                WHERE (%(status)s::text IS NULL OR a.status = %(status)s)
                  AND a.score >= %(min_score)s
                  AND a.created_at >= %(start)s AND a.created_at < %(end)s
                  AND (%(after)s::bigint IS NULL OR a.alert_id < %(after)s)
                ORDER BY a.alert_id DESC LIMIT %(limit)s""",
            {
                "status": status,
                "min_score": min_score,
                "start": start,
                "end": end,
                "limit": limit,
                "after": after,
            },
        ).fetchall()


@dataclass(frozen=True, slots=True)
class Reviewed:
    found: bool
    changed: bool  # False: it had been reviewed already
    row: dict[str, Any] | None


def review(conn: psycopg.Connection[Any], alert_id: int, verdict: Review, who: str) -> Reviewed:
    """Confirm or dismiss an open alert; a reviewed alert keeps its first verdict."""
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            """UPDATE fraud_alerts SET status = %s, reviewed_by = %s, reviewed_at = now()
                WHERE alert_id = %s AND status = 'open'
            RETURNING alert_id, status, reviewed_by, reviewed_at""",
            (verdict, who, alert_id),
        ).fetchone()
        if row is not None:
            return Reviewed(found=True, changed=True, row=row)
        current = cur.execute(
            "SELECT alert_id, status, reviewed_by, reviewed_at FROM fraud_alerts"
            " WHERE alert_id = %s",
            (alert_id,),
        ).fetchone()
    return Reviewed(found=current is not None, changed=False, row=current)


def summary(conn: psycopg.Connection[Any], start: datetime, end: datetime) -> dict[str, Any]:
    """Orders scored, alerts by status and per hour, reasons, score distribution, and the
    precision reviews give (confirmed / reviewed)."""
    window = {"start": start, "end": end, "buckets": SCORE_BUCKETS}
    with conn.cursor(row_factory=dict_row) as cur:
        counts = cur.execute(
            """SELECT (SELECT count(*) FROM fraud_scores
                        WHERE event_timestamp >= %(start)s AND event_timestamp < %(end)s)
                          AS orders_scored,
                      count(*) AS alerts,
                      count(*) FILTER (WHERE status = 'open') AS open,
                      count(*) FILTER (WHERE status = 'confirmed') AS confirmed,
                      count(*) FILTER (WHERE status = 'dismissed') AS dismissed
                 FROM fraud_alerts WHERE created_at >= %(start)s AND created_at < %(end)s""",
            window,
        ).fetchone()
        per_hour = cur.execute(
            """SELECT date_trunc('hour', created_at, 'UTC') AS hour, count(*) AS alerts
                 FROM fraud_alerts WHERE created_at >= %(start)s AND created_at < %(end)s
                GROUP BY 1 ORDER BY 1""",
            window,
        ).fetchall()
        reasons = cur.execute(
            """SELECT reason, count(*) AS alerts
                 FROM fraud_alerts, unnest(reasons) AS reason
                WHERE created_at >= %(start)s AND created_at < %(end)s
                GROUP BY 1 ORDER BY 2 DESC, 1""",
            window,
        ).fetchall()
        scores = cur.execute(
            """SELECT least(floor(score * %(buckets)s), %(buckets)s - 1)::int AS bucket,
                      count(*) AS orders
                 FROM fraud_scores
                WHERE event_timestamp >= %(start)s AND event_timestamp < %(end)s
                GROUP BY 1 ORDER BY 1""",
            window,
        ).fetchall()
    assert counts is not None
    reviewed = counts["confirmed"] + counts["dismissed"]
    return {
        **counts,
        "precision": round(counts["confirmed"] / reviewed, 4) if reviewed else None,
        "alerts_per_hour": per_hour,
        "reasons": reasons,
        "score_distribution": [
            {
                "low": b["bucket"] / SCORE_BUCKETS,
                "high": (b["bucket"] + 1) / SCORE_BUCKETS,
                "orders": b["orders"],
            }
            for b in scores
        ],
    }


@dataclass(frozen=True, slots=True)
class Evaluation:
    """Alerts against a ground truth of fraudulent orders (event ids, with a pattern)."""

    labelled: int
    alerts: int
    true_alerts: int
    by_pattern: list[tuple[str, int, int]]  # pattern, labelled, alerted
    false_by_reason: list[tuple[str, int]]

    @property
    def precision(self) -> float | None:
        return self.true_alerts / self.alerts if self.alerts else None

    @property
    def recall(self) -> float | None:
        return self.true_alerts / self.labelled if self.labelled else None


def evaluate(conn: psycopg.Connection[Any], labels_csv: bytes) -> Evaluation:
    """Precision and recall of the stored alerts against ``labels_csv`` (the generator's
    ``event_id,pattern,instance`` file, or any CSV with ``event_id`` and ``pattern``)."""
    truth = pl.read_csv(labels_csv, infer_schema=False, columns=["event_id", "pattern"])
    with conn.transaction():
        conn.execute("CREATE TEMP TABLE fraud_truth (event_id uuid, pattern text) ON COMMIT DROP")
        with conn.cursor().copy("COPY fraud_truth FROM STDIN (FORMAT csv)") as copy:
            copy.write(truth.write_csv(include_header=False))
        by_pattern = conn.execute(
            """SELECT t.pattern, count(*), count(a.alert_id)
                 FROM fraud_truth t LEFT JOIN fraud_alerts a USING (event_id)
                GROUP BY 1 ORDER BY 1"""
        ).fetchall()
        row = conn.execute(
            """SELECT count(*), count(t.event_id)
                 FROM fraud_alerts a LEFT JOIN fraud_truth t USING (event_id)"""
        ).fetchone()
        false_by_reason = conn.execute(
            """SELECT reason, count(*) FROM fraud_alerts a
                 LEFT JOIN fraud_truth t USING (event_id), unnest(a.reasons) AS reason
                WHERE t.event_id IS NULL GROUP BY 1 ORDER BY 2 DESC, 1"""
        ).fetchall()
    assert row is not None
    return Evaluation(
        labelled=sum(int(n) for _, n, _ in by_pattern),
        alerts=int(row[0]),
        true_alerts=int(row[1]),
        by_pattern=[(str(p), int(n), int(hit)) for p, n, hit in by_pattern],
        false_by_reason=[(str(r), int(n)) for r, n in false_by_reason],
    )
