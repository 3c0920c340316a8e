"""The learned half of fraud scoring: an Isolation Forest over recent orders' features.

``shopstream fraud train`` fits it on the features stored with recent scores (no event
is read twice) and stores it as a new version; the loader scores with the newest version
and stores that version with every score. Unsupervised: it learns what usual orders look
like and fires on the rarest ``contamination`` share, never on labels.
"""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import numpy as np
import polars as pl
import psycopg

from shopstream.fraud.features import MODEL_FEATURES

RULES_ONLY: Final = "rules-only"  # the model version of scores made before any training


@dataclass(frozen=True, slots=True)
class AnomalyModel:
    version: str
    features: tuple[str, ...]
    cutoff: float  # anomaly score (higher: rarer) at which the model fires
    forest: Any  # sklearn.ensemble.IsolationForest

    def anomaly(self, features: pl.DataFrame) -> np.ndarray[Any, np.dtype[np.float64]]:
        """Higher is rarer (the forest's own score, negated)."""
        matrix = features.select(
            pl.col(name).cast(pl.Float64).fill_null(0.0).fill_nan(0.0) for name in self.features
        ).to_numpy()
        scores: np.ndarray[Any, np.dtype[np.float64]] = -self.forest.score_samples(matrix)
        return scores


@dataclass(frozen=True, slots=True)
class TrainedModel:
    version: str
    orders: int
    cutoff: float


def train(
    conn: psycopg.Connection[Any], *, days: float, contamination: float, seed: int = 0
) -> TrainedModel | None:
    """Fit a new version on the orders scored in the last ``days`` (of event time, up to
    the newest); None when there are too few to learn from."""
    from sklearn.ensemble import IsolationForest

    rows = conn.execute(
        """SELECT features FROM fraud_scores
            WHERE event_type = 'purchase'
              AND event_timestamp > (SELECT max(event_timestamp) FROM fraud_scores)
                                    - make_interval(secs => %s)""",
        (days * 86_400,),
    ).fetchall()
    if len(rows) < 100:
        return None
    frame = pl.DataFrame([r[0] for r in rows], infer_schema_length=None)
    matrix = frame.select(
        pl.col(name).cast(pl.Float64).fill_null(0.0).fill_nan(0.0)
        if name in frame.columns
        else pl.lit(0.0).alias(name)
        for name in MODEL_FEATURES
    ).to_numpy()
    forest = IsolationForest(n_estimators=100, contamination=contamination, random_state=seed)
    forest.fit(matrix)
    cutoff = float(-forest.offset_)  # the rarest `contamination` share scores above this
    version = f"iforest-{datetime.now(UTC):%Y%m%dT%H%M%S}"
    buffer = io.BytesIO()
    pickle.dump(forest, buffer)
    with conn.transaction():
        conn.execute(
            """INSERT INTO fraud_models (version, orders, features, cutoff, model)
               VALUES (%s, %s, %s, %s, %s)""",
            (version, len(rows), list(MODEL_FEATURES), cutoff, buffer.getvalue()),
        )
    return TrainedModel(version, len(rows), cutoff)


class ModelCache:
    """The newest stored model, loaded once per version (a lookup per batch is cheap)."""

    def __init__(self) -> None:
        self._model: AnomalyModel | None = None

    def newest(self, conn: psycopg.Connection[Any]) -> AnomalyModel | None:
        row = conn.execute(
            "SELECT version FROM fraud_models ORDER BY trained_at DESC, version DESC LIMIT 1"
        ).fetchone()
        if row is None:
            return None
        if self._model is None or self._model.version != row[0]:
            stored = conn.execute(
                "SELECT features, cutoff, model FROM fraud_models WHERE version = %s", (row[0],)
            ).fetchone()
            assert stored is not None
            features, cutoff, blob = stored
            # The blob was written by `fraud train` into this installation's own database.
            forest = pickle.loads(bytes(blob))
            self._model = AnomalyModel(str(row[0]), tuple(features), float(cutoff), forest)
        return self._model
