"""The learned model: trained by ``fraud train`` on stored features, versioned, and joined
to the rules' score from the next batch on."""

from __future__ import annotations

from pathlib import Path

import psycopg

from tests.fixtures.cli import cli_env, shopstream


def test_train_then_score_with_the_new_version(tmp_path: Path, database_url: str) -> None:
    env = cli_env(database_url, tmp_path / "home")
    first, second = tmp_path / "first", tmp_path / "second"
    for inbox, seed, start in (
        (first, "1", "2026-04-01T00:00:00"),
        (second, "2", "2026-04-02T00:00:00"),
    ):
        shopstream(
            "generate", "--out", str(inbox), "--events", "30000", "--seed", seed, "--format",
            "canonical", "--fraud", "0.02", "--start", start, env=env,
        )  # fmt: skip
    failed = shopstream("fraud", "train", env=env, check=False)
    assert failed.returncode == 1 and "fewer than 100" in " ".join(failed.stderr.split())
    shopstream("run", "--source", str(first), "--until-idle", env=env)
    labels = first.with_name(first.name + ".fraud-labels.csv")
    evaluated = " ".join(shopstream("fraud", "evaluate", str(labels), env=env).stdout.split())
    assert "card_testing" in evaluated and "precision" in evaluated and "recall" in evaluated
    trained = shopstream("fraud", "train", "--contamination", "0.02", env=env).stdout
    assert "model iforest-" in trained
    shopstream("run", "--source", str(second), "--until-idle", env=env)
    with psycopg.connect(database_url) as conn:
        versions = dict(
            conn.execute("SELECT model_version, count(*) FROM fraud_scores GROUP BY 1").fetchall()
        )
        stored = conn.execute("SELECT version, orders FROM fraud_models").fetchall()
        fired = conn.execute(
            "SELECT count(*) FROM fraud_scores WHERE 'model_anomaly' = ANY(reasons)"
            " AND model_version <> 'rules-only'"
        ).fetchone()
        orders = conn.execute(
            "SELECT count(*) FROM events WHERE event_type IN ('purchase', 'refund')"
        ).fetchone()
    assert len(stored) == 1 and set(versions) == {"rules-only", stored[0][0]}
    assert sum(versions.values()) == (orders or (0,))[0]
    assert fired is not None and 0 < fired[0] < versions[stored[0][0]] * 0.2
