"""Score a batch's inserted orders inside its transaction: activity, features, rules and
model, scores, alerts. Only rows the batch inserted are scored, so a duplicate or a
replayed event is never scored twice, and a crash before the commit leaves no score. (The
features alone are read on a connection of their own, :class:`FeatureReader`: reads that
write nothing, so they take no part in the transaction's outcome.)"""

from __future__ import annotations

import math
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Final

import polars as pl
import psycopg
from psycopg import sql

from shopstream.fraud.features import (
    ACTIVITY_COLUMNS,
    MODEL_FEATURES,
    SCORED_TYPES,
    activity,
    copy_rows,
    order_features,
    order_lines,
    prepare_feature_connection,
)
from shopstream.fraud.model import RULES_ONLY, ModelCache
from shopstream.fraud.rules import (
    BURST_SUFFIX,
    BURSTS,
    MODEL_REASON,
    MODEL_WEIGHT,
    FraudParams,
    FraudRule,
    render_fraud_rules,
)
from shopstream.settings import Settings

# Feature columns stored with each score (what an analyst, and the model's training, read).
_STORED: Final = (
    *MODEL_FEATURES,
    "amount",
    "amount_ratio",
    "user_orders_10m",
    "refunds_24h",
    "prior_orders",
    "prior_refunds",
    "prior_activity",
    "previous_country",
    "minutes_since_previous",
    "new_device",
    "new_country",
)
_SCORE_COLUMNS: Final = (
    "event_id",
    "order_id",
    "user_id",
    "event_type",
    "event_timestamp",
    "amount",
    "score",
    "reasons",
    "model_version",
    "features",
    "batch_id",
)


@dataclass(frozen=True, slots=True)
class FraudSetup:
    """Rendered rules, the alert threshold, and the newest model (looked up per batch)."""

    rules: tuple[FraudRule, ...]
    alert_threshold: float
    small_amount: float
    models: ModelCache = field(default_factory=ModelCache, compare=False)


@dataclass(frozen=True, slots=True)
class FraudOutcome:
    scored: int
    alerts: int


def fraud_setup(settings: Settings) -> FraudSetup:
    """The rules with the configured limits and weights; unknown names raise ValueError."""
    params = FraudParams().with_overrides(settings.fraud_params)
    return FraudSetup(
        render_fraud_rules(params, settings.fraud_weights),
        settings.fraud_alert_threshold,
        params.small_amount,
    )


@dataclass(frozen=True, slots=True)
class RecordedActivity:
    """A batch's order lines and the ``fraud_activity`` rows written for them."""

    lines: pl.DataFrame
    rows: pl.DataFrame

    @property
    def has_orders(self) -> bool:
        """Whether any of it is scored (purchases, refunds), not logins alone."""
        return bool(self.rows["event_type"].is_in(SCORED_TYPES).any())


def record_activity(
    conn: psycopg.Connection[Any], events: pl.DataFrame, batch_id: int
) -> RecordedActivity | None:
    """Write the batch's fraud state (its orders, refunds and logins with their context).

    Rows of this batch alone, so the loader writes them before its turn to commit: no
    other batch sees them until the commit, and this batch's own scoring reads them."""
    lines = order_lines(events)
    if not lines.height:
        return None
    rows = activity(lines, batch_id)
    copy_rows(conn, sql.Identifier("fraud_activity"), ACTIVITY_COLUMNS, rows)
    return RecordedActivity(lines, rows)


class FeatureReader:
    """Reads a batch's order features on a connection of its own, in a thread of its own.

    The features must wait for every earlier batch's commit (an order sees all activity
    before it), as must the loader's rollups and sessions: read apart, PostgreSQL works on
    both at once instead of one after the other on the loader's connection. This
    connection cannot see the batch's uncommitted activity, so it is handed over (see
    :func:`~shopstream.fraud.features.order_features`)."""

    def __init__(self, url: str, small_amount: float) -> None:
        self._url = url
        self._small_amount = small_amount
        self._conn: psycopg.Connection[Any] | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fraud-features")

    def start(self, recorded: RecordedActivity) -> Future[pl.DataFrame]:
        """Begin reading; call once every earlier batch has committed."""
        return self._thread.submit(self._read, recorded)

    def close(self) -> None:
        self._thread.shutdown(wait=True)
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _read(self, recorded: RecordedActivity) -> pl.DataFrame:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = psycopg.connect(
                self._url, autocommit=True, connect_timeout=5, application_name="shopstream"
            )
            prepare_feature_connection(self._conn)
        return order_features(self._conn, recorded.rows, recorded.lines, self._small_amount)


def score_batch(
    conn: psycopg.Connection[Any],
    events: pl.DataFrame,
    batch_id: int,
    setup: FraudSetup,
    features: Future[pl.DataFrame],
) -> FraudOutcome:
    """Score the batch's orders, whose ``features`` :meth:`FeatureReader.start` is reading,
    and open their alerts, once every earlier batch has committed."""
    features_read = features.result()
    model = setup.models.newest(conn)
    judged = judge(features_read, setup.rules,
                   model.anomaly(features_read) if model else None,
                   model.cutoff if model else None)  # fmt: skip
    orders = events.select(pl.col("event_id").cast(pl.String), "order_id")
    scores = judged.join(orders, on="event_id", how="left").select(
        "event_id",
        "order_id",
        "user_id",
        "event_type",
        "event_timestamp",
        "amount",
        pl.col("score").round(4),
        pl.concat_str(pl.lit("{"), pl.col("reasons").list.join(","), pl.lit("}")).alias("reasons"),
        pl.lit(model.version if model else RULES_ONLY).alias("model_version"),
        pl.struct(*_STORED).struct.json_encode().alias("features"),
        pl.lit(batch_id, dtype=pl.Int64).alias("batch_id"),
    )
    copy_rows(conn, sql.Identifier("fraud_scores"), _SCORE_COLUMNS, scores)
    alarming = scores.filter(pl.col("score") >= setup.alert_threshold)["event_id"]
    alerted = (
        conn.execute(
            """INSERT INTO fraud_alerts (event_id, user_id, score, reasons, batch_id)
               SELECT event_id, user_id, score, reasons, batch_id FROM fraud_scores
                WHERE event_id = ANY(%s::uuid[]) AND score >= %s ORDER BY event_id""",
            (alarming.to_list(), setup.alert_threshold),
        ).rowcount
        if alarming.len()
        else 0
    )
    revealing = judged.filter(
        (pl.col("score") >= setup.alert_threshold)
        & pl.col("reasons").list.eval(pl.element().is_in(list(_BURST_RULES))).list.any()
    )["event_id"]
    if revealing.len():
        alerted += _alert_bursts(conn, revealing.to_list(), batch_id, setup)
    return FraudOutcome(scores.height, alerted)


_BURST_RULES: Final = frozenset(burst.rule for burst in BURSTS)


def _alert_bursts(
    conn: psycopg.Connection[Any], revealing: list[str], batch_id: int, setup: FraudSetup
) -> int:
    """Alerts for the earlier members of the bursts the ``revealing`` orders show (see
    :class:`~shopstream.fraud.rules.Burst`); each member alerts once, with the highest
    revealing order's score and every burst it belongs to."""
    members = sql.SQL(" UNION ALL ").join(
        sql.SQL(
            """SELECT m.event_id, m.user_id, t.score, m.reasons, {reason} AS burst
                 FROM fraud_scores t
                 JOIN fraud_activity ta ON ta.event_id = t.event_id
                 JOIN fraud_activity ma ON ma.{same} = ta.{same}
                      AND ma.event_type = {kind}
                      AND ma.event_timestamp >= ta.event_timestamp - {window}::interval
                      AND ma.event_timestamp <= ta.event_timestamp
                      AND ma.event_id <> t.event_id {small}
                 JOIN fraud_scores m ON m.event_id = ma.event_id
                WHERE t.event_id = ANY({revealing}::uuid[]) AND {rule} = ANY(t.reasons)"""
        ).format(
            reason=sql.Literal(burst.rule + BURST_SUFFIX),
            same=sql.Identifier(burst.same),
            kind=sql.Literal(burst.kind),
            window=sql.Literal(burst.window),
            small=sql.SQL("AND ma.amount <= {}").format(sql.Literal(setup.small_amount))
            if burst.small_only
            else sql.SQL(""),
            revealing=sql.Placeholder("revealing"),
            rule=sql.Literal(burst.rule),
        )
        for burst in BURSTS
    )
    return conn.execute(
        sql.SQL(
            """INSERT INTO fraud_alerts (event_id, user_id, score, reasons, batch_id)
               SELECT event_id, user_id, max(score),
                      reasons || array_agg(DISTINCT burst ORDER BY burst), {batch}
                 FROM ({members}) member
                WHERE NOT EXISTS (SELECT 1 FROM fraud_alerts a WHERE a.event_id = member.event_id)
                GROUP BY event_id, user_id, reasons
                ORDER BY event_id
               ON CONFLICT (event_id) DO NOTHING"""
        ).format(members=members, batch=sql.Literal(batch_id)),
        {"revealing": revealing},
    ).rowcount


def judge(
    features: pl.DataFrame,
    rules: tuple[FraudRule, ...],
    anomaly: Any = None,
    cutoff: float | None = None,
) -> pl.DataFrame:
    """Each order's reasons (the rules it breaks, and the model's when it fires) and score:
    ``1 - prod(1 - weight)`` over its reasons."""
    hits = [
        (rule.code, pl.sql_expr(rule.predicate).fill_null(value=False), rule.weight)
        for rule in rules
    ]
    if anomaly is not None and cutoff is not None:
        features = features.with_columns(pl.Series("_anomaly", anomaly, dtype=pl.Float64))
        hits.append((MODEL_REASON, pl.col("_anomaly") >= cutoff, MODEL_WEIGHT))
    survival = pl.sum_horizontal(
        pl.when(hit).then(pl.lit(math.log1p(-min(weight, 0.9999)))).otherwise(0.0)
        for _, hit, weight in hits
    )
    reasons = pl.concat_list(
        pl.when(hit).then(pl.lit(code)).otherwise(pl.lit(None, dtype=pl.String))
        for code, hit, _ in hits
    ).list.drop_nulls()
    return features.with_columns(
        (1 - survival.exp()).alias("score"), reasons.alias("reasons")
    ).drop("_anomaly", strict=False)
